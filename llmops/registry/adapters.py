"""Registered LoRA adapters: resolve a reference, fetch the adapter folder, promote a version.

``load_adapter`` is what serving uses to hot-load an adapter into vLLM, and the folder a
local chat model merges in: it only ever returns a folder downloaded from the registry,
never a path a client chose.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.config import Settings, load_settings
from llmops.errors import FinetuneError
from llmops.registry.kinds import ADAPTER_KIND
from llmops.registry.promotion import promote
from llmops.registry.refs import adapter_served_name
from llmops.registry.versions import model_version

__all__ = ["ADAPTER_FILES", "AdapterVersion", "adapter_version", "load_adapter",
           "promote_adapter"]

# what a PEFT adapter folder holds (written by training, checked by loading)
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass(frozen=True)
class AdapterVersion:
    """A registered adapter version, its folder on this machine, and what it was trained on."""

    name: str
    version: int
    path: Path
    base_model: str
    lora_rank: int
    method: str
    run_id: str

    @property
    def served_name(self) -> str:
        """The name vLLM serves it under (what clients put in ``model``)."""
        return adapter_served_name(self.name, self.version)


def adapter_version(ref: str, settings: Settings | None = None) -> Any:
    """The ``ModelVersion`` of an adapter reference (``NAME`` means the latest version)."""
    return model_version(ref, settings, ADAPTER_KIND)


def _complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in ADAPTER_FILES)


def _download(version: Any, dest: Path) -> None:
    """Fetch the adapter artifact of ``version`` into ``dest`` (atomically)."""
    import mlflow

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        got = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{version.name}/{version.version}", dst_path=str(tmp)))
        folder = got / "artifacts" / "adapter"
        missing = [f for f in ADAPTER_FILES if not (folder / f).is_file()]
        if missing:
            raise FinetuneError(f"adapter {version.name}/{version.version} lacks "
                                f"{', '.join(missing)} in the registry")
        staged = tmp / "adapter"
        staged.mkdir()
        for name in ADAPTER_FILES:
            shutil.move(str(folder / name), staged / name)
        if dest.exists() and not _complete(dest):
            shutil.rmtree(dest, ignore_errors=True)
        try:
            staged.rename(dest)
        except OSError:
            if not _complete(dest):  # not another process having fetched the same version
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_adapter(ref: str, settings: Settings | None = None) -> AdapterVersion:
    """A registered adapter (``NAME``, ``NAME@ALIAS``, ``NAME/VERSION``) as a local PEFT folder.

    The folder (``.llmops/<env>/adapters/<name>-v<version>``) holds only
    ``adapter_config.json`` and ``adapter_model.safetensors``, as vLLM's LoRA loading
    expects. Versions are immutable, so a folder already fetched is reused.
    """
    settings = settings or load_settings()
    version = adapter_version(ref, settings)
    tags = version.tags or {}
    dest = settings.state_dir / "adapters" / f"{version.name}-v{version.version}"
    if not _complete(dest):
        _download(version, dest)
    return AdapterVersion(
        name=version.name,
        version=int(version.version),
        path=dest,
        base_model=tags.get("llmops.base_model", ""),
        lora_rank=int(tags.get("llmops.lora_rank", "0") or 0),
        method=tags.get("llmops.method", ""),
        run_id=version.run_id or "",
    )


def promote_adapter(name: str, alias: str, version: int | None = None,
                    settings: Settings | None = None, user: str | None = None) -> int:
    """Point ``name@alias`` at an adapter version (default: the latest), with the audit tags
    chains get (``llmops.promoted.<alias>.by / .at / .from_version``); returns the version."""
    return promote(name, alias, version, settings=settings or load_settings(), user=user,
                   kind=ADAPTER_KIND)
