"""The registry floor: what every registered artifact shares.

References (``NAME``, ``NAME@ALIAS``, ``NAME/VERSION``), resolving one to a version,
promotion with audit tags, the ``llmops.kind`` tag, the one namespace MLflow gives
prompts and models, and registered LoRA adapters. Prompts, chains, fine-tuning, the
gate and serving all build on it; it imports nothing above the ground floor.
"""

from __future__ import annotations

from llmops.registry.adapters import AdapterVersion, adapter_version, load_adapter, promote_adapter
from llmops.registry.kinds import ADAPTER_KIND, CHAIN_KIND, KIND_TAG, check_name_free
from llmops.registry.promotion import promote
from llmops.registry.refs import Ref, adapter_served_name, parse_ref
from llmops.registry.versions import model_version

__all__ = [
    "ADAPTER_KIND",
    "CHAIN_KIND",
    "KIND_TAG",
    "AdapterVersion",
    "Ref",
    "adapter_served_name",
    "adapter_version",
    "check_name_free",
    "load_adapter",
    "model_version",
    "parse_ref",
    "promote",
    "promote_adapter",
]
