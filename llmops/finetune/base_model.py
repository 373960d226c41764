"""The base model an adapter is trained on: which one it is, and loading it.

An adapter is only meaningful on top of the exact base it was trained on, so
the base is recorded by identity, not copied: an offline model by its
content-addressed folder name (``smollm2-<hash>``, converted again from the same
GGUF file; ``tiny-<hash>``, rebuilt from the docs and the config in the record), a
folder by its path and a hash of its ``config.json``, a model id as given.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from llmops.errors import FinetuneError, MissingExtraError
from llmops.lineage import content_hash

__all__ = ["BaseModelRef", "load_base_model", "locate_base_model", "pick_device",
           "resolve_base_model"]

_OFFLINE = ("smollm2", "tiny")


@dataclass(frozen=True)
class BaseModelRef:
    """The identity of a base model, enough to find or rebuild it elsewhere."""

    spec: str
    name: str
    kind: Literal["smollm2", "tiny", "path", "hub"]
    path: str
    config_sha256: str
    rebuild: str
    tiny: dict[str, Any] | None = None

    def tags(self) -> dict[str, str]:
        return {
            "llmops.base_model": self.name,
            "llmops.base_model_kind": self.kind,
            "llmops.base_model_config_sha256": self.config_sha256,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _config_hash(folder: Path) -> str:
    try:
        return content_hash(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return ""


def resolve_base_model(spec: str, models_dir: Path, docs_dir: Path | None) -> BaseModelRef:
    """An offline model (``smollm2``, ``tiny``; built on first use), a local folder, or a model
    id (loaded by transformers)."""
    if spec in _OFFLINE:
        from llmops.models.catalog import ensure_model, model_marker

        folder = ensure_model(spec, models_dir, docs_dir)
        marker = model_marker(folder) or {}
        how = (f"from docs whose corpus hash is {marker.get('corpus_sha256')} and the recorded "
               "tiny config" if spec == "tiny" else
               f"from the GGUF file with SHA-256 {marker.get('gguf_sha256')}")
        return BaseModelRef(
            spec=spec, name=folder.name, kind=spec, path=str(folder),  # type: ignore[arg-type]
            config_sha256=_config_hash(folder),
            rebuild=f"llmops models build {spec} ({how}); it lands in models_dir/{folder.name}",
            tiny=marker,
        )
    folder = Path(spec).expanduser()
    if folder.exists() or spec.startswith((".", "/", "~")):
        folder = folder.resolve()
        if not (folder / "config.json").is_file():
            raise FinetuneError(
                f"cannot load the base model '{spec}': {folder} has no config.json; "
                "pass 'smollm2', 'tiny', a transformers model folder, or a model id"
            )
        return BaseModelRef(spec=spec, name=str(folder), kind="path", path=str(folder),
                            config_sha256=_config_hash(folder),
                            rebuild=f"the model folder {folder} (config.json hash recorded)")
    return BaseModelRef(spec=spec, name=spec, kind="hub", path=spec, config_sha256="",
                        rebuild=f"the model id {spec} from a model hub")


def locate_base_model(ref: dict[str, Any], models_dir: Path | None = None,
                      docs_dir: Path | None = None, override: str | None = None) -> str:
    """Where the recorded base model is on this machine (used when a packaged adapter loads)."""
    if override:
        return override
    kind, name, path = ref.get("kind"), str(ref.get("name")), str(ref.get("path"))
    if kind in _OFFLINE:
        from llmops.models.catalog import ensure_model, model_marker

        candidates = [Path(path)] + ([Path(models_dir) / name] if models_dir else [])
        for folder in candidates:
            if folder.name == name and model_marker(folder) is not None:
                return str(folder)
        if models_dir is not None:
            built = ensure_model(str(kind), models_dir, docs_dir)
            if built.name == name:
                return str(built)
        raise FinetuneError(
            f"the adapter's base model {name} is not on this machine and this checkout builds a "
            f"different {kind} model: check out the commit it was trained at and run "
            f"{ref.get('rebuild')}"
        )
    if kind == "path":
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise FinetuneError(f"the adapter's base model folder {folder} does not exist here: "
                                "load it with model_config={'base_model_path': FOLDER}")
        if ref.get("config_sha256") and _config_hash(folder) != ref["config_sha256"]:
            raise FinetuneError(f"the base model folder {folder} has changed since the adapter was "
                                "trained (its config.json hash differs)")
        return str(folder)
    return path


def pick_device() -> str:
    """``cuda`` (this process's GPU under a launcher) when there is one, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _attention(requested: str | None, device: str) -> str:
    if requested:
        return requested
    if device == "cuda":
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


def load_base_model(path: str, *, spec: str | None = None, device: str = "cpu",
                    bf16: bool = False, attn_implementation: str | None = None,
                    place: bool = True) -> tuple[Any, Any]:
    """(model, tokenizer) of a base model; errors name the model and say what to fix.

    ``place=False`` leaves the model on the CPU (a Trainer under a launcher places it).
    """
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MissingExtraError(exc.name or "transformers", "local") from exc
    label = spec or path
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.bfloat16 if bf16 else torch.float32,
            attn_implementation=_attention(attn_implementation, device),
        )
    except ImportError as exc:
        raise FinetuneError(f"cannot load the base model '{label}': {exc}".splitlines()[0]) from exc
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise FinetuneError(
            f"cannot load the base model '{label}': {exc.__class__.__name__}: {first}; "
            "pass 'smollm2', 'tiny', a transformers model folder, or a model id"
        ) from exc
    if not getattr(tokenizer, "chat_template", None):
        raise FinetuneError(
            f"the base model '{label}' has no chat template: the adapter is trained on chat-"
            "formatted prompts, as vLLM's chat endpoint serves them; pick a chat model"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if place and device != "cpu":
        model.to(device)
    return model, tokenizer
