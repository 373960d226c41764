"""LoRA adapters from the registry, loaded into the running engine.

Only registered adapters are ever loaded: a request names an adapter by its
registry reference (``NAME``, ``NAME@ALIAS``, ``NAME/VERSION``), the folder is the
one downloaded from the registry, and no client-supplied path reaches vLLM.
Before loading, the adapter's rank is checked against the engine's
``max_lora_rank`` and its base model against the engine's model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.config import Settings
from llmops.errors import LlmopsError

__all__ = ["AdapterError", "AdapterRegistry", "LoadedAdapter"]

log = logging.getLogger(__name__)


class AdapterError(LlmopsError):
    """An adapter cannot be served here; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LoadedAdapter:
    name: str
    version: int
    served_name: str
    path: Path
    base_model: str
    lora_rank: int

    def as_json(self) -> dict[str, Any]:
        return {"model": self.served_name, "name": self.name, "version": self.version,
                "base_model": self.base_model, "lora_rank": self.lora_rank}


class AdapterRegistry:
    """Resolves adapter references for an engine serving ``engine_model`` (a folder or id)."""

    def __init__(self, settings: Settings, engine_model: str | None, max_lora_rank: int,
                 enabled: bool = True) -> None:
        self.settings = settings
        self.engine_model = engine_model
        self.max_lora_rank = max_lora_rank
        self.enabled = enabled

    def resolve(self, ref: str) -> LoadedAdapter:
        """Fetch ``ref`` from the registry and check that this engine can serve it."""
        from llmops.errors import BadReferenceError, FinetuneError, ModelNotFoundError
        from llmops.registry import load_adapter

        if not self.enabled:
            raise AdapterError("this engine was started without LoRA (engine.enable_lora)", 409)
        try:
            found = load_adapter(ref, self.settings)
        except BadReferenceError as exc:
            raise AdapterError(f"'{ref}' is not an adapter reference: use NAME, NAME@ALIAS or "
                               "NAME/VERSION of a registered adapter", 400) from exc
        except ModelNotFoundError as exc:
            raise AdapterError(str(exc), 404) from exc
        except FinetuneError as exc:
            raise AdapterError(str(exc), 400) from exc
        if found.lora_rank > self.max_lora_rank:
            raise AdapterError(f"adapter {found.name}/{found.version} has LoRA rank "
                               f"{found.lora_rank}, above this engine's max_lora_rank "
                               f"{self.max_lora_rank}", 409)
        if self.engine_model and Path(found.base_model).name != Path(self.engine_model).name:
            raise AdapterError(f"adapter {found.name}/{found.version} was trained on "
                               f"'{found.base_model}', but this engine serves "
                               f"'{Path(self.engine_model).name}'", 409)
        return LoadedAdapter(found.name, int(found.version), found.served_name, Path(found.path),
                             found.base_model, int(found.lora_rank))

    def at_startup(self, names: list[str], alias: str) -> dict[str, LoadedAdapter]:
        """``NAME@alias`` for each name that has one; the others are skipped with a warning."""
        loaded: dict[str, LoadedAdapter] = {}
        for name in names:
            try:
                adapter = self.resolve(f"{name}@{alias}")
            except AdapterError as exc:
                if exc.status == 404:
                    log.warning("adapter %s@%s: not registered yet; not loaded", name, alias)
                    continue
                raise
            loaded[adapter.served_name] = adapter
        return loaded
