"""Registered chains served by the gateway, their chat model pointed at the engine."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmops.config import Settings
from llmops.lakehouse import name_and_version

__all__ = ["ChainServer", "ServedChain"]

log = logging.getLogger(__name__)


@dataclass
class ServedChain:
    name: str
    version: str
    model: Any
    prompt: str
    prompt_version: str
    index_version: str
    chat_model: str
    adapter: str | None  # the served name (what the log records), e.g. docs-qa-lora-v3
    adapter_ref: str | None = None  # the registered version, e.g. docs-qa-lora/3


class ChainServer:
    """Loads ``NAME@ALIAS`` once per resolved version.

    An alias is re-read from the registry at most every ``alias_refresh_s``; when the registry
    cannot be reached, the version it last named keeps serving for up to ``alias_stale_s``
    (a short MLflow outage does not stop chain traffic; a promotion takes effect within
    ``alias_refresh_s``).

    Over an engine pool, ``pick(affinity)`` names the engine (its ``/v1`` URL) for a call, and
    a chain version is loaded once per engine it is sent to (its chat model points there).
    """

    def __init__(self, settings: Settings, engine_url: str, served_model: str,
                 max_tokens: int | None = None, api_key_env: str | None = None,
                 alias_refresh_s: float = 1.0, alias_stale_s: float = 300.0,
                 pick: Callable[[str], str] | None = None) -> None:
        self.settings = settings
        self.alias_refresh_s = alias_refresh_s
        self.alias_stale_s = alias_stale_s
        self._aliases: dict[str, tuple[float, tuple[str, str]]] = {}  # ref -> (when, key)
        self._failed: dict[str, float] = {}  # ref -> when the registry last failed to answer
        self.api_key_env = api_key_env  # where the chat models find the engine's key
        self.engine_url = engine_url
        self.pick = pick
        self.served_model = served_model
        self.max_tokens = max_tokens
        self._cache: dict[tuple[str, str, str], ServedChain] = {}  # (name, version, engine)
        self._lock = threading.Lock()

    def _engine(self, affinity: str) -> str:
        return self.engine_url if self.pick is None else self.pick(affinity)

    def get(self, name: str, alias: str, affinity: str = "") -> ServedChain:
        """The chain version ``name@alias`` names now (ModelNotFoundError when none)."""
        from llmops.errors import BadReferenceError, ModelNotFoundError

        ref = f"{name}@{alias}"
        now = time.monotonic()
        engine = self._engine(affinity)
        with self._lock:
            hit = self._aliases.get(ref)
            cached = self._cache.get((*hit[1], engine)) if hit else None
        if hit and cached is not None and (
                now - hit[0] < self.alias_refresh_s
                # the registry failed a moment ago: ask it again after alias_refresh_s, not on
                # every call (each would wait for its timeout)
                or (now - self._failed.get(ref, -1e18) < self.alias_refresh_s
                    and now - hit[0] < self.alias_stale_s)):
            return cached
        try:
            served = self._load(ref, engine)
        except (ModelNotFoundError, BadReferenceError):
            raise
        except Exception as exc:
            self._failed[ref] = now
            if hit and cached is not None and now - hit[0] < self.alias_stale_s:
                log.warning("chains: the registry cannot be reached (%s): %s stays version %s "
                            "(read %.0f s ago)", exc.__class__.__name__, ref, cached.version,
                            now - hit[0])
                return cached
            raise
        with self._lock:
            self._aliases[ref] = (now, (served.name, served.version))
        return served

    def get_version(self, name: str, version: str, affinity: str = "") -> ServedChain:
        """Version ``version`` of chain ``name`` (a rollout's arm pins one)."""
        engine = self._engine(affinity)
        key = (name, str(version), engine)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        return self._load(f"{name}/{version}", engine)

    def _load(self, ref: str, engine: str) -> ServedChain:
        from llmops.chains.registry import load_at_endpoint
        from llmops.registry import model_version

        version = model_version(ref, self.settings)
        name = version.name
        key = (name, str(version.version), engine)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            model, logged = load_at_endpoint(version, engine, self.served_model,
                                             self.max_tokens, self.api_key_env)
            tags = version.tags or {}
            prompt, prompt_version = name_and_version(tags.get("llmops.prompt"))
            served = ServedChain(
                name=name, version=str(version.version), model=model,
                prompt=prompt or "", prompt_version=prompt_version or "",
                index_version=tags.get("llmops.index_version", ""),
                chat_model=logged["served_chat_model"],
                adapter=logged.get("served_adapter"),
                adapter_ref=(logged.get("chat_model") or {}).get("adapter"),
            )
            self._cache[key] = served
            return served

    def chat_models(self) -> set[str]:
        """The served model names of the chains loaded so far (base model or adapter)."""
        with self._lock:
            return {s.chat_model for s in self._cache.values()} | {
                s.adapter for s in self._cache.values() if s.adapter}

    @staticmethod
    def answer(served: ServedChain, question: str) -> dict[str, Any]:
        return served.model.predict([{"question": question}])[0]

    def invoke(self, name: str, alias: str, question: str) -> tuple[ServedChain, dict[str, Any]]:
        served = self.get(name, alias)
        return served, self.answer(served, question)
