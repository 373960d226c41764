"""The fine-tuning job: check, train, evaluate, package, register, in one MLflow run.

Everything that can be checked is checked before the run starts (config, LoRA
rank against the server's limit, training data, the base model's config and
tokenizer). The model version is registered last, after training and evaluation
succeeded, so a failure anywhere leaves a failed run and no version.

Under a multi-process launch (accelerate / torchrun) every process trains; the
main process alone tracks, evaluates and registers, and hands the result to the
others.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops.config import Settings, load_settings
from llmops.errors import ConfigError, FinetuneError
from llmops.finetune.base_model import BaseModelRef, resolve_base_model
from llmops.finetune.config import FinetuneConfig, check_servable, load_finetune_config
from llmops.finetune.data import TrainingData, load_eval_rows, load_training_data
from llmops.lakehouse import table_path
from llmops.lineage import git_commit
from llmops.registry import ADAPTER_KIND, KIND_TAG, adapter_served_name, parse_ref

__all__ = ["FinetuneResult", "finetune"]


@dataclass(frozen=True)
class FinetuneResult:
    """What a job produced: the run, the registered version, the local adapter, the scores."""

    run_id: str
    model_name: str
    version: int
    adapter_dir: Path
    base_model: str
    method: str
    train_rows: int
    heldout_rows: int
    metrics: dict[str, float] = field(default_factory=dict)
    alias: str | None = None
    eval_split: str = "heldout"

    @property
    def served_name(self) -> str:
        return adapter_served_name(self.model_name, self.version)

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}/{self.version}"


def _resolve_config(config: FinetuneConfig | Path | str | None, settings: Settings,
                    overrides: dict[str, Any]) -> FinetuneConfig:
    if isinstance(config, FinetuneConfig):
        if not any(v is not None for v in overrides.values()):
            return config
        from pydantic import ValidationError

        try:
            return FinetuneConfig.model_validate(
                {**config.model_dump(), **{k: v for k, v in overrides.items() if v is not None}})
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(f"fine-tuning option '{'.'.join(map(str, err['loc']))}': "
                              f"{err['msg']}") from exc
    return load_finetune_config(config, settings, **overrides)


def _check_base(base: BaseModelRef) -> None:
    """The base model's config and tokenizer load, and it has a chat template (no weights read)."""
    try:
        from transformers import AutoConfig, AutoTokenizer
    except ImportError as exc:
        from llmops.errors import MissingExtraError

        raise MissingExtraError(exc.name or "transformers", "local") from exc
    try:
        AutoConfig.from_pretrained(base.path)
        tokenizer = AutoTokenizer.from_pretrained(base.path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise FinetuneError(
            f"cannot load the base model '{base.spec}': {exc.__class__.__name__}: {first}; "
            "pass 'smollm2', 'tiny', a transformers model folder, or a model id"
        ) from exc
    if not getattr(tokenizer, "chat_template", None):
        raise FinetuneError(
            f"the base model '{base.spec}' has no chat template: the adapter is trained on chat-"
            "formatted prompts, as vLLM's chat endpoint serves them; pick a chat model"
        )


@contextmanager
def _progress_bars(show: bool) -> Iterator[None]:
    """Hide the loading and dataset-mapping bars of transformers and datasets when ``show`` is off."""
    if show:
        yield
        return
    import datasets
    from transformers.utils import logging as hf_logging

    hf_on, ds_on = hf_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()
    mlflow_bar = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        if mlflow_bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = mlflow_bar
        if hf_on:
            hf_logging.enable_progress_bar()
        if ds_on:
            datasets.enable_progress_bars()


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
    return out


def _short(values: list[str], limit: int = 500) -> str:
    text = ", ".join(values)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _eval_rows(config: FinetuneConfig, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows that can be scored: KTO's undesirable completions are not the answer to aim for."""
    usable = [r for r in rows if config.method != "kto" or r.get("label") is True]
    return usable[: config.evaluation.max_rows]


def _log_inputs(config: FinetuneConfig, data: TrainingData, base: BaseModelRef,
                settings: Settings) -> None:
    import mlflow
    import mlflow.data
    import pandas as pd

    mlflow.set_tags({"llmops.kind": "finetune", "llmops.method": config.method,
                     "llmops.env": settings.env, "llmops.git_commit": git_commit(settings.root),
                     "llmops.data.source": data.source, "llmops.data.sha256": data.sha256,
                     **base.tags()})
    mlflow.log_params(_flat("", config.model_dump(mode="json", exclude={"lora"}), {}))
    lora = config.lora_config().to_dict()
    mlflow.log_params({f"lora.{k}": lora[k] for k in ("r", "lora_alpha", "lora_dropout",
                                                     "target_modules") if k in lora})
    mlflow.log_dict({k: (sorted(v) if isinstance(v, set) else v) for k, v in lora.items()},
                    "lora_config.yaml")
    mlflow.log_dict(config.model_dump(mode="json"), "finetune_config.yaml")
    mlflow.log_dict({"base_model": base.to_dict(), **data.lineage()}, "lineage.json")
    mlflow.log_table(pd.DataFrame(data.lineage_rows()), "lineage_rows.json")
    if data.source == "feedback":
        from mlflow.data.delta_dataset_source import DeltaDatasetSource

        source: Any = DeltaDatasetSource(path=str(table_path(settings.lakehouse, "feedback")))
    else:
        from mlflow.data.dataset_source_registry import resolve_dataset_source

        with warnings.catch_warnings():  # a local path matches two equivalent source types
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(data.source)
    for rows, context in ((data.train, "training"), (data.heldout, "evaluation")):
        if rows:
            frame = pd.DataFrame(rows)
            mlflow.log_input(mlflow.data.from_pandas(frame, source=source,
                                                     name=f"{config.method}-{context}"),
                             context=context)


def _share(result: FinetuneResult | None) -> FinetuneResult:
    """Hand the main process's result to every process of a distributed launch."""
    try:
        import torch.distributed as dist
    except ImportError:
        dist = None  # type: ignore[assignment]
    if dist is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [result]
        dist.broadcast_object_list(box, src=0)
        result = box[0]
    if result is None:
        raise FinetuneError("the main process of the launch produced no result")
    return result


def finetune(
    settings: Settings | None = None,
    base: str | None = None,
    method: str | None = None,
    data: str | Path | None = None,
    config: FinetuneConfig | Path | str | None = None,
    progress: bool = True,
    alias: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> FinetuneResult:
    """Train a LoRA adapter, evaluate it against its base, register it in MLflow.

    Args:
        settings: the environment (default: the current project's).
        base: 'smollm2', 'tiny', a model folder or a model id (default: the config's
            ``base_model``, else the project's base model).
        method: 'sft' or 'kto' (default: the config's ``method``).
        data: 'feedback' or a JSON lines file (default: the config's ``data``).
        config: a ``FinetuneConfig``, a YAML file, or None for ``finetune/lora.yaml``.
        progress: show the trainer's progress bar.
        alias: point this alias (e.g. 'staging') at the new version.
        echo: receives one line per stage.
    """
    say = echo or (lambda line: None)
    settings = settings or load_settings()
    cfg = _resolve_config(config, settings, {"base_model": base, "method": method,
                                             "data": str(data) if data is not None else None,
                                             "alias": alias})
    parse_ref(f"{cfg.registered_name}@{cfg.alias}" if cfg.alias else cfg.registered_name)
    check_servable(cfg, settings)
    work_root = settings.state_dir / "finetune"
    work_root.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="job-", dir=work_root))
    try:
        eval_file = cfg.evaluation.data
        training = load_training_data(cfg.method, cfg.data, settings, work_dir,
                                      0.0 if eval_file else cfg.training.eval_fraction,
                                      cfg.training.seed)
        if eval_file:
            training = dataclasses.replace(training, heldout=load_eval_rows(eval_file, settings))
        # after the data: offline models are built on first use, which bad data should not cost
        base_ref = resolve_base_model(cfg.base_model or settings.base_model, settings.models_dir,
                                      settings.root / "docs")
        _check_base(base_ref)
        scored = (f"{len(training.heldout)} evaluation rows from {eval_file}" if eval_file
                  else f"{len(training.heldout)} held out")
        say(f"data: {len(training.train) + (0 if eval_file else len(training.heldout))} "
            f"{cfg.method} rows from {training.source} ({len(training.train)} train, {scored})")
        with _progress_bars(progress):
            if not _is_main_process():
                from llmops.finetune.training import train_adapter

                train_adapter(cfg, training, base_ref, work_dir / "adapter", work_dir,
                              run_id=None, progress=False)
                return _share(None)
            return _share(_run(cfg, training, base_ref, settings, work_dir, progress, say))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _run(cfg: FinetuneConfig, training: TrainingData, base: BaseModelRef, settings: Settings,
         work_dir: Path, progress: bool, say: Callable[[str], None]) -> FinetuneResult:
    import mlflow
    import pandas as pd

    from llmops.finetune.evaluation import evaluate_adapter
    from llmops.finetune.packaging import log_adapter
    from llmops.finetune.training import plan_hardware, train_adapter
    from llmops.stores import connect

    connect(settings)
    adapter_dir = work_dir / "adapter"
    with mlflow.start_run(run_name=f"finetune-{cfg.registered_name}") as run:
        _log_inputs(cfg, training, base, settings)
        plan = plan_hardware(cfg)
        mlflow.set_tags({"llmops.device": plan.device, "llmops.bf16": str(plan.bf16).lower(),
                         "llmops.packing": str(plan.packing).lower(),
                         "llmops.attention": plan.attn_implementation or "default"})
        say(f"training: {cfg.method} LoRA r={cfg.lora_rank} on {base.name} ({plan.device}"
            f"{', bf16' if plan.bf16 else ''}{', packed' if plan.packing else ''})")
        stats = train_adapter(cfg, training, base, adapter_dir, work_dir, run_id=run.info.run_id,
                              progress=progress)
        metrics = stats.metrics()
        mlflow.log_metrics(metrics)

        split = (Path(cfg.evaluation.data).name if cfg.evaluation.data
                 else "heldout" if training.heldout else "train")
        rows = _eval_rows(cfg, training.heldout or training.train)
        if not rows:
            raise FinetuneError("no rows to evaluate the adapter on: KTO needs desirable "
                                "(label true) rows")
        say(f"evaluation: adapter vs base on {len(rows)} {split} rows")
        ev = cfg.evaluation
        scores = evaluate_adapter(base.path, adapter_dir, rows, max_new_tokens=ev.max_new_tokens,
                                  batch_size=ev.batch_size, device=plan.device, bf16=plan.bf16)
        metrics.update({"eval_base_token_f1": scores.base_token_f1,
                        "eval_adapter_token_f1": scores.adapter_token_f1,
                        "eval_rows": float(scores.rows)})
        if scores.base_fact_hit is not None and scores.adapter_fact_hit is not None:
            metrics.update({"eval_base_fact_hit": scores.base_fact_hit,
                            "eval_adapter_fact_hit": scores.adapter_fact_hit})
        tables = [("evaluation.json", scores.examples)]
        if ev.on_train and training.heldout:
            on_train = evaluate_adapter(base.path, adapter_dir, _eval_rows(cfg, training.train),
                                        max_new_tokens=ev.max_new_tokens,
                                        batch_size=ev.batch_size, device=plan.device,
                                        bf16=plan.bf16)
            metrics.update({"train_base_token_f1": on_train.base_token_f1,
                            "train_adapter_token_f1": on_train.adapter_token_f1})
            tables.append(("evaluation_train.json", on_train.examples))
        elif ev.on_train:
            metrics.update({"train_base_token_f1": scores.base_token_f1,
                            "train_adapter_token_f1": scores.adapter_token_f1})
        mlflow.log_metrics({k: v for k, v in metrics.items() if k not in stats.metrics()})
        for name, examples in tables:
            mlflow.log_table(pd.DataFrame(examples), name)

        lineage = training.lineage()
        lora = cfg.lora_config()
        tags = {
            KIND_TAG: ADAPTER_KIND, **base.tags(), "llmops.method": cfg.method,
            "llmops.lora_rank": str(cfg.lora_rank), "llmops.lora_alpha": str(lora.lora_alpha),
            "llmops.lora_target_modules": ",".join(sorted(lora.target_modules or [])),
            "llmops.data.source": training.source, "llmops.data.sha256": training.sha256,
            "llmops.data.rows": str(training.rows),
            "llmops.data.feedback_rows": str(len(lineage["feedback_ids"])),
            "llmops.data.chains": _short(lineage["chains"]),
            "llmops.data.prompts": _short(lineage["prompts"]),
            "llmops.data.models": _short(lineage["models"]),
            "llmops.eval.split": split, "llmops.eval.rows": str(scores.rows),
            "llmops.eval.base_token_f1": f"{scores.base_token_f1:.4f}",
            "llmops.eval.adapter_token_f1": f"{scores.adapter_token_f1:.4f}",
            "llmops.env": settings.env, "llmops.git_commit": git_commit(settings.root),
        }
        description = (
            f"LoRA {cfg.method} adapter (r={cfg.lora_rank}) on {base.name}: token F1 "
            f"{scores.base_token_f1:.3f} (base) -> {scores.adapter_token_f1:.3f} (adapter) on "
            f"{scores.rows} {split} rows; trained on {len(training.train)} rows from {training.source}"
        )
        say(f"registering {cfg.registered_name}")
        packaged = log_adapter(adapter_dir, base, cfg.registered_name, tags, settings,
                               description=description, max_new_tokens=ev.max_new_tokens)
        mlflow.set_tag("llmops.registered", f"{packaged.name}/{packaged.version}")

    local = settings.state_dir / "adapters" / f"{packaged.name}-v{packaged.version}"
    if local.exists():
        shutil.rmtree(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(adapter_dir), local)
    if cfg.alias:
        from llmops.registry import promote_adapter

        promote_adapter(packaged.name, cfg.alias, packaged.version, settings)
    return FinetuneResult(
        run_id=run.info.run_id, model_name=packaged.name, version=packaged.version,
        adapter_dir=local, base_model=base.name, method=cfg.method,
        train_rows=len(training.train), heldout_rows=len(training.heldout), metrics=metrics,
        alias=cfg.alias, eval_split=split,
    )
