"""Package an adapter as an MLflow pyfunc model that references its base model, and register it.

The logged model's only artifact is the adapter folder (``adapter_config.json`` +
``adapter_model.safetensors``); the base model is recorded by identity in the
model config and in tags (see ``base_model.BaseModelRef``), never copied. Loading
the model finds the base on the machine (``tiny`` is rebuilt from the docs when
missing; ``model_config={"base_model_path": FOLDER}`` points elsewhere) and puts
the adapter on top. ``predict`` takes a list of prompts and returns completions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc

import llmops
from llmops.config import Settings
from llmops.errors import FinetuneError, LlmopsError
from llmops.finetune.base_model import BaseModelRef

__all__ = ["ADAPTER_ARTIFACT", "AdapterModel", "PackagedAdapter", "log_adapter"]

ADAPTER_ARTIFACT = "adapter"
_MODEL_FILE = Path(__file__).with_name("adapter_pyfunc.py")


class AdapterModel(mlflow.pyfunc.PythonModel):
    """Base model + LoRA adapter, generating greedy chat answers to prompts."""

    def load_context(self, context: Any) -> None:
        from peft import PeftModel

        from llmops.config import load_settings
        from llmops.finetune.base_model import load_base_model, locate_base_model, pick_device

        config = dict(context.model_config or {})
        models_dir = docs_dir = None
        if config["base_model"].get("kind") in ("smollm2", "tiny") and not config.get("base_model_path"):
            settings = load_settings()
            models_dir, docs_dir = settings.models_dir, settings.root / "docs"
        path = locate_base_model(config["base_model"], models_dir, docs_dir,
                                 override=config.get("base_model_path"))
        device = pick_device()
        base, self.tokenizer = load_base_model(path, device=device, bf16=device == "cuda")
        self.model = PeftModel.from_pretrained(base, context.artifacts[ADAPTER_ARTIFACT])
        self.model.eval()
        self.max_new_tokens = int(config.get("max_new_tokens", 64))

    def predict(self, model_input: list[str], params: dict[str, Any] | None = None) -> list[str]:
        from llmops.finetune.evaluation import generate_answers

        prompts = [model_input] if isinstance(model_input, str) else list(model_input)
        max_new = int((params or {}).get("max_new_tokens", self.max_new_tokens))
        return generate_answers(self.model, self.tokenizer, [str(p) for p in prompts], max_new)


@dataclass(frozen=True)
class PackagedAdapter:
    name: str
    version: int
    model_uri: str


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for dist in ("mlflow", "pydantic", "pyyaml", "torch", "transformers", "tokenizers",
                 "safetensors", "peft"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    return reqs


def log_adapter(adapter_dir: Path, base: BaseModelRef, name: str, tags: dict[str, str],
                settings: Settings, description: str | None = None,
                max_new_tokens: int = 64) -> PackagedAdapter:
    """Log ``adapter_dir`` as a pyfunc model in the active run and register it as ``name``.

    Called last in a job, after training and evaluation succeeded: a failure
    before this point leaves no model version behind.
    """
    import shutil
    import tempfile

    from mlflow import MlflowClient

    staged = None
    if adapter_dir.name != ADAPTER_ARTIFACT:
        # MLflow stores an artifact folder under its own name; loading expects "adapter"
        staged = Path(tempfile.mkdtemp(prefix="llmops-adapter-"))
        adapter_dir = Path(shutil.copytree(adapter_dir, staged / ADAPTER_ARTIFACT))
    try:
        info = mlflow.pyfunc.log_model(
            name="adapter",
            python_model=str(_MODEL_FILE),
            artifacts={ADAPTER_ARTIFACT: str(adapter_dir)},
            model_config={"base_model": base.to_dict(), "max_new_tokens": max_new_tokens},
            code_paths=[str(Path(llmops.__file__).parent)],
            pip_requirements=_requirements(),
            metadata={"llmops_base_model": base.to_dict()},
            tags=tags,
        )
    except LlmopsError:
        raise
    except Exception as exc:
        raise FinetuneError(
            f"logging the adapter failed: {exc.__class__.__name__}: {exc}".splitlines()[0]
        ) from exc
    finally:
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)
    version = mlflow.register_model(info.model_uri, name, tags=tags)
    if description:
        MlflowClient().update_model_version(name, version.version, description)
    return PackagedAdapter(name=name, version=int(version.version),
                           model_uri=f"models:/{name}/{version.version}")
