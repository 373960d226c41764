"""The offline models by name: ``smollm2`` (the default) and ``tiny``; what is built.

Everything that takes a model setting (chat models, the engine, fine-tuning)
resolves it here: an offline model's name becomes its built folder (built on
first use); a folder or a model id is passed on as given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_MODEL", "OFFLINE_MODELS", "BuiltModel", "build_model", "ensure_model",
           "list_models", "resolve_model"]

DEFAULT_MODEL = "smollm2"
OFFLINE_MODELS = ("smollm2", "tiny")
_MARKERS = {"smollm2": "llmops_model.json", "tiny": "llmops_tiny.json"}


@dataclass(frozen=True)
class BuiltModel:
    """A built offline model folder."""

    kind: str
    name: str
    path: Path
    size_mb: float


def ensure_model(kind: str, models_dir: Path, docs_dir: Path | None = None) -> Path:
    """The folder of offline model ``kind``, built on first use."""
    if kind == "smollm2":
        from llmops.models.smollm2 import ensure_smollm2

        return ensure_smollm2(models_dir)
    if kind == "tiny":
        from llmops.models.tiny import ensure_tiny_model

        return ensure_tiny_model(models_dir, docs_dir)
    from llmops.errors import ConfigError

    raise ConfigError(f"unknown offline model '{kind}': pick one of {', '.join(OFFLINE_MODELS)}")


def build_model(kind: str, models_dir: Path, docs_dir: Path | None = None,
                out: Path | None = None) -> Path:
    """Build offline model ``kind`` (again) into ``out`` or its content-named folder."""
    if out is None:
        return ensure_model(kind, models_dir, docs_dir)
    if kind == "smollm2":
        from llmops.models.smollm2 import build_smollm2

        return build_smollm2(out)
    if kind == "tiny":
        from llmops.models.tiny import build_tiny_model

        return build_tiny_model(out, docs_dir)
    return ensure_model(kind, models_dir, docs_dir)  # raises: unknown name


def resolve_model(model: str, models_dir: Path, docs_dir: Path | None = None) -> str:
    """An offline model's name becomes its folder (built on first use); others pass as given."""
    if model in OFFLINE_MODELS:
        return str(ensure_model(model, models_dir, docs_dir))
    return model


def list_models(models_dir: Path) -> list[BuiltModel]:
    """The offline models built under ``models_dir``, by kind and name."""
    found = []
    folder = Path(models_dir)
    if not folder.is_dir():
        return []
    for path in sorted(folder.iterdir()):
        for kind, marker in _MARKERS.items():
            if path.name.startswith(f"{kind}-") and (path / marker).is_file():
                size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
                found.append(BuiltModel(kind, path.name, path, size / 1e6))
    return found


def model_marker(path: Path) -> dict[str, object] | None:
    """The build record of an offline model folder, or None for any other folder."""
    for marker in _MARKERS.values():
        file = Path(path) / marker
        if file.is_file():
            return dict(json.loads(file.read_text(encoding="utf-8")))
    return None
