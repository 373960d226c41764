"""Serving: vLLM behind a gateway that logs every request and every piece of feedback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmops.serving.config import (
    AuthConfig,
    EndpointConfig,
    EngineConfig,
    GatewayConfig,
    load_endpoint_config,
)

if TYPE_CHECKING:
    from llmops.serving.engine import Engine, engine_command
    from llmops.serving.gateway import Gateway
    from llmops.serving.server import build_gateway, serve
    from llmops.serving.wal import WriteAheadLog

__all__ = [
    "AuthConfig",
    "EndpointConfig",
    "Engine",
    "EngineConfig",
    "Gateway",
    "GatewayConfig",
    "WriteAheadLog",
    "build_gateway",
    "engine_command",
    "load_endpoint_config",
    "serve",
]

_LAZY = {
    "Engine": "llmops.serving.engine",
    "engine_command": "llmops.serving.engine",
    "Gateway": "llmops.serving.gateway",
    "build_gateway": "llmops.serving.server",
    "serve": "llmops.serving.server",
    "WriteAheadLog": "llmops.serving.wal",
}


def __getattr__(name: str) -> Any:
    # httpx, starlette and the engine launcher load on first use only.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'llmops.serving' has no attribute {name!r}")
