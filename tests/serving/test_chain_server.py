"""The gateway's chain server keeps serving through a short registry outage, and a chain's
503 never names a store's URI (no real registry needed: the lookup is what is replaced)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from llmops.errors import ModelNotFoundError, StoreUnavailableError
from llmops.serving.chain_routes import redact_uris
from llmops.serving.chains import ChainServer, ServedChain


def _served(version: str) -> ServedChain:
    return ServedChain(name="qa", version=version, model=None, prompt="qa", prompt_version="1",
                       index_version="", chat_model="base", adapter=None)


def test_an_alias_is_cached_and_outlives_a_short_registry_outage(monkeypatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("llmops.serving.chains.time.monotonic", lambda: now[0])
    server = ChainServer(SimpleNamespace(), "http://engine/v1", "base",
                         alias_refresh_s=1.0, alias_stale_s=60.0)
    answers: list[object] = [_served("3")]
    calls: list[str] = []

    def load(ref: str, engine: str) -> ServedChain:
        calls.append(ref)
        got = answers[0]
        if isinstance(got, Exception):
            raise got
        server._cache[(got.name, got.version, engine)] = got  # noqa: SLF001 - as _load keeps it
        return got

    monkeypatch.setattr(server, "_load", load)
    assert server.get("qa", "production").version == "3"
    now[0] += 0.5
    assert server.get("qa", "production").version == "3" and len(calls) == 1  # cached
    now[0] += 1.0
    answers[0] = _served("4")  # promoted: seen once the alias is read again
    assert server.get("qa", "production").version == "4" and len(calls) == 2
    # the registry goes away: the version the alias last named keeps serving...
    answers[0] = StoreUnavailableError("cannot reach postgresql://mlflow:s3cret@db/mlflow")
    now[0] += 30
    assert server.get("qa", "production").version == "4"
    asked = len(calls)
    now[0] += 0.5  # within alias_refresh_s of the failure: the registry is not asked again
    assert server.get("qa", "production").version == "4" and len(calls) == asked
    # ... for alias_stale_s at most; then the caller hears of it
    now[0] += 31
    with pytest.raises(StoreUnavailableError):
        server.get("qa", "production")
    # an alias that does not exist is never answered from the cache
    answers[0] = ModelNotFoundError("no alias")
    with pytest.raises(ModelNotFoundError):
        server.get("qa", "production")


def test_over_an_engine_pool_a_chain_is_loaded_once_per_engine_its_callers_pick() -> None:
    engines = {"alice": "http://vllm-0:8000/v1", "bob": "http://vllm-1:8000/v1"}
    server = ChainServer(SimpleNamespace(), engines["alice"], "base",
                         pick=lambda affinity: engines[affinity])
    loaded: list[tuple[str, str]] = []

    def load(ref: str, engine: str) -> ServedChain:
        loaded.append((ref, engine))
        got = ServedChain(name="qa", version="3", model=engine, prompt="qa", prompt_version="1",
                          index_version="", chat_model="base", adapter=None)
        server._cache[("qa", "3", engine)] = got  # noqa: SLF001 - as _load keeps it
        return got

    server._load = load  # type: ignore[method-assign]  # noqa: SLF001
    assert server.get_version("qa", "3", "alice").model == engines["alice"]
    assert server.get_version("qa", "3", "bob").model == engines["bob"]
    assert server.get_version("qa", "3", "alice").model == engines["alice"]  # cached
    assert loaded == [("qa/3", engines["alice"]), ("qa/3", engines["bob"])]


def test_uris_are_cut_to_their_scheme() -> None:
    said = redact_uris("cannot reach postgresql://mlflow:s3cret@db:5432/mlflow (timeout); "
                       "artifacts at s3://bucket/prefix?X-Amz-Signature=abc")
    assert "s3cret" not in said and "bucket" not in said and "Signature" not in said
    assert said == "cannot reach postgresql://... (timeout); artifacts at s3://..."
