"""The fine-tuning job end to end on the CPU with the offline tiny model (real MLflow store)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops.errors import ConfigError, FinetuneDataError, FinetuneError, OutOfMemoryError
from llmops.finetune import finetune, load_adapter
from llmops.stores import connect
from tests.finetune.conftest import CORRECTIONS, fast_config, model_versions, write_jsonl


def test_sft_run_is_tracked_registered_and_loadable(settings, sft_file: Path) -> None:
    import mlflow
    from mlflow import MlflowClient
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = finetune(settings, data=sft_file, config=fast_config(), progress=False)

    assert (result.model_name, result.version, result.method) == ("docs-qa-lora", 1, "sft")
    assert (result.train_rows, result.heldout_rows) == (9, 3)
    assert result.base_model.startswith("tiny-")
    for key in ("eval_base_token_f1", "eval_adapter_token_f1", "train_tokens_per_s",
                "peak_gpu_memory_bytes", "train_final_loss", "eval_loss"):
        assert key in result.metrics, key
    assert result.metrics["train_tokens_per_s"] > 0
    assert sorted(p.name for p in result.adapter_dir.iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors"]

    connect(settings)
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["lora.r"] == "8"
    assert run.data.params["training.learning_rate"] == "0.005"
    assert run.data.tags["llmops.base_model"] == result.base_model
    losses = client.get_metric_history(result.run_id, "train/loss")
    assert len(losses) >= 3 and len({m.step for m in losses}) == len(losses)  # a loss curve
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"lora_config.yaml", "lineage.json", "lineage_rows.json", "evaluation.json"} <= artifacts
    lineage = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=result.run_id, artifact_path="lineage.json")).read_text())
    assert lineage["feedback_ids"] == sorted(f"f{i}" for i in range(len(CORRECTIONS)))
    assert lineage["chains"] == ["docs-qa/3"] and lineage["prompts"] == ["qa/2"]
    assert len(lineage["file_sha256"]) == 64
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"sft-training", "sft-evaluation"}

    version = client.get_model_version("docs-qa-lora", "1")
    tags = version.tags
    assert tags["llmops.kind"] == "adapter" and tags["llmops.method"] == "sft"
    assert tags["llmops.lora_rank"] == "8" and tags["llmops.base_model"] == result.base_model
    assert tags["llmops.data.feedback_rows"] == str(len(CORRECTIONS))
    assert float(tags["llmops.eval.adapter_token_f1"]) == pytest.approx(
        result.metrics["eval_adapter_token_f1"], abs=1e-4)
    assert "token F1" in version.description

    # The registry holds the adapter only, never the base model's weights.
    local = Path(mlflow.artifacts.download_artifacts("models:/docs-qa-lora/1"))
    weights = [p.relative_to(local).as_posix() for p in local.rglob("*.safetensors")]
    assert weights == ["artifacts/adapter/adapter_model.safetensors"]

    # load_adapter fetches a plain PEFT folder from the registry (the local copy removed first).
    for f in result.adapter_dir.iterdir():
        f.unlink()
    result.adapter_dir.rmdir()
    adapter = load_adapter("docs-qa-lora/1", settings)
    assert adapter.served_name == "docs-qa-lora-v1" and adapter.lora_rank == 8
    assert adapter.base_model == result.base_model and adapter.method == "sft"
    assert sorted(p.name for p in adapter.path.iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors"]
    base_path = settings.models_dir / result.base_model
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path), adapter.path)
    assert model.peft_config["default"].r == 8
    assert load_adapter("docs-qa-lora", settings).version == 1


def test_registered_adapter_loads_as_pyfunc_with_its_base(settings, sft_file: Path) -> None:
    import mlflow.pyfunc
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    result = finetune(settings, data=sft_file, config=fast_config(epochs=1), progress=False)
    model = mlflow.pyfunc.load_model(result.model_uri)
    # the registered model is the base with the trained adapter on it, weight for weight
    wrapped = model.unwrap_python_model().model
    assert isinstance(wrapped, PeftModel)
    saved = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    loaded = {k: v for k, v in wrapped.state_dict().items() if "lora_" in k}
    assert saved and len(loaded) == len(saved)
    for name, tensor in saved.items():
        match = [v for k, v in loaded.items() if k.replace(".default", "").endswith(
            name.removeprefix("base_model.model."))]
        assert len(match) == 1 and torch.equal(match[0].cpu(), tensor), name
    answers = model.predict(["How do I promote a chain to production?", "What is an alias?"])
    # (the tiny model has random weights: a greedy answer may be empty, its first token EOS)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    # greedy decoding: the same questions get the same answers again
    assert list(model.predict(["How do I promote a chain to production?", "What is an alias?"])) == (
        list(answers))


def test_sft_on_corrections_beats_the_base_model(settings, sft_file: Path) -> None:
    """The measured effect: after SFT on corrections, answers to those questions score higher."""
    config = fast_config(epochs=20, eval_fraction=0.0)
    result = finetune(settings, data=sft_file, config=config, progress=False)
    base, tuned = result.metrics["eval_base_token_f1"], result.metrics["eval_adapter_token_f1"]
    assert result.eval_split == "train" and result.metrics["eval_rows"] == len(CORRECTIONS)
    assert tuned > base + 0.3, (base, tuned)


def test_kto_run_end_to_end(settings, kto_file: Path) -> None:
    from mlflow import MlflowClient

    result = finetune(settings, method="kto", data=kto_file, config=fast_config(epochs=1),
                      progress=False)
    assert result.method == "kto" and result.version == 1
    # KTO holds out desirable rows only: they are scored against their completion
    assert result.heldout_rows == 4 and result.train_rows == 12
    connect(settings)
    version = MlflowClient().get_model_version("docs-qa-lora", "1")
    assert version.tags["llmops.method"] == "kto"
    assert MlflowClient().get_metric_history(result.run_id, "train/loss")
    assert load_adapter("docs-qa-lora", settings).method == "kto"


def test_feedback_data_with_lineage(settings) -> None:
    from datetime import datetime, timezone

    from llmops.lakehouse import append_rows

    ts = datetime(2026, 11, 1, tzinfo=timezone.utc)
    append_rows(settings.lakehouse, "inference_log", [
        {"request_id": f"r{i}", "ts": ts, "env": "dev", "endpoint": "/v1/chains/docs-qa/invoke",
         "model": "base", "chain": "docs-qa", "chain_version": "2", "prompt": "qa",
         "prompt_version": "1", "request": json.dumps({"question": q}), "response": "no idea",
         "status": 200, "latency_ms": 5.0}
        for i, (q, _) in enumerate(CORRECTIONS[:6])
    ])
    append_rows(settings.lakehouse, "feedback", [
        {"feedback_id": f"f{i}", "request_id": f"r{i}", "ts": ts, "rating": -1, "score": None,
         "correction": a, "source": "api", "user": "u"}
        for i, (_, a) in enumerate(CORRECTIONS[:6])
    ])
    result = finetune(settings, data="feedback", config=fast_config(epochs=1), progress=False,
                      alias="staging")
    assert result.train_rows + result.heldout_rows == 6
    connect(settings)
    from mlflow import MlflowClient

    version = MlflowClient().get_model_version_by_alias("docs-qa-lora", "staging")
    assert version.tags["llmops.data.source"] == "feedback"
    assert version.tags["llmops.data.feedback_rows"] == "6"
    assert version.tags["llmops.data.chains"] == "docs-qa/2"
    assert version.tags["llmops.promoted.staging.from_version"] == "none"


# -- bad input: a clear error, and no model version -------------------------------------------


def _no_versions(settings) -> None:
    connect(settings)
    assert model_versions() == []


def test_empty_dataset(settings, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(FinetuneDataError, match="no training rows"):
        finetune(settings, data=empty, config=fast_config(), progress=False)
    with pytest.raises(FinetuneDataError, match="no sft rows"):
        finetune(settings, data="feedback", config=fast_config(), progress=False)
    _no_versions(settings)


def test_missing_columns(settings, tmp_path: Path) -> None:
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "q", "answer": "a"}])
    with pytest.raises(FinetuneDataError, match=r"rows\.jsonl: rows lack the column\(s\) completion"):
        finetune(settings, data=rows, config=fast_config(), progress=False)
    with pytest.raises(FinetuneDataError, match="completion, label"):
        finetune(settings, method="kto", data=rows, config=fast_config(), progress=False)
    _no_versions(settings)


def test_unloadable_base_model(settings, sft_file: Path, tmp_path: Path) -> None:
    with pytest.raises(FinetuneError, match="cannot load the base model './no-such-model'"):
        finetune(settings, base="./no-such-model", data=sft_file, config=fast_config(),
                 progress=False)
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(FinetuneError, match="cannot load the base model"):
        finetune(settings, base=str(broken), data=sft_file, config=fast_config(), progress=False)
    _no_versions(settings)


def test_rank_above_the_servers_max(settings, sft_file: Path) -> None:
    (settings.root / "serving").mkdir()
    (settings.root / "serving" / "endpoint.yaml").write_text("engine:\n  max_lora_rank: 4\n")
    with pytest.raises(FinetuneError, match=r"LoRA rank 8 is above 4.*max_lora_rank"):
        finetune(settings, data=sft_file, config=fast_config(), progress=False)
    _no_versions(settings)


def test_bad_config_value(settings, sft_file: Path) -> None:
    with pytest.raises(ConfigError, match="method"):
        finetune(settings, method="dpo", data=sft_file, config=fast_config(), progress=False)


def test_out_of_memory_registers_nothing(settings, sft_file: Path, monkeypatch) -> None:
    """A CUDA OOM cannot happen on the CPU: the trainer's step raises torch's OOM error instead."""
    import torch
    from mlflow import MlflowClient
    from trl import SFTTrainer

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SFTTrainer, "training_step", oom)
    with pytest.raises(OutOfMemoryError, match="lower training.micro_batch_size"):
        finetune(settings, data=sft_file, config=fast_config(), progress=False)
    _no_versions(settings)
    runs = MlflowClient().search_runs([MlflowClient().get_experiment_by_name(
        settings.project).experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
