"""Several engines behind one gateway: health-checked, with session and prefix affinity.

``llmops serve --engine-url URL --engine-url URL ...`` runs a gateway that starts no engine
and spreads its requests over the engines named. The policy:

- **Affinity by rendezvous hashing.** Each request has an affinity key: the caller's session
  (the ``X-Session-Id`` header, else the ``user`` field, with the caller's key) when it names
  one, else the start of its prompt (the first 512 characters of its messages: the system
  prompt and the first turn, the part a prefix cache shares). Every healthy engine gets a
  score ``hash(key, engine)``; the highest wins. The same key lands on the same engine while
  that engine is healthy, so a conversation's turns and a chain's shared system prompt find
  their KV blocks in that engine's prefix cache; when an engine leaves, only its own keys
  move (to their second choice), and they move back when it returns.
- **Bounded load.** An engine already holding more than ``load_factor`` times the mean
  in-flight requests (plus 2) is passed over for the key's next choice, so one hot session
  or prompt cannot pile onto one engine while the others idle ("consistent hashing with
  bounded loads"). This is the session router of vLLM's production-stack (consistent hashing
  of a session id) and the prefix scorer of llm-d (engines that share the prompt's prefix
  first), reduced to what a gateway can know without the engines' KV-cache events.
- **Health.** Every ``check_interval_s`` each engine's ``/v1/models`` is asked (with the
  engine key); an engine that fails it, or refuses a request's connection, leaves the
  rotation at once and is asked again at the next check, returning when it answers. A
  request whose connection was refused is sent once to the next engine (the refusing one
  never saw it). When no engine is healthy the gateway answers 503 and ``/readyz`` is 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Iterable
from typing import Any

import aiohttp
import orjson

from llmops.serving.errors import HTTPError
from llmops.serving.upstream import Upstream

__all__ = ["EnginePool", "affinity_key"]

log = logging.getLogger(__name__)

PREFIX_CHARS = 512  # the start of a prompt that picks its engine when no session is named


def affinity_key(payload: dict[str, Any], session: str | None = None,
                 caller: str = "") -> str:
    """What keeps a request on one engine: its session, else the start of its prompt."""
    if session:
        return f"session:{caller}:{session}"
    user = payload.get("user")
    if isinstance(user, str) and user:
        return f"user:{caller}:{user}"
    messages = payload.get("messages")
    if isinstance(messages, list):
        text = "".join(str(m.get("content", "")) if isinstance(m, dict) else "" for m in messages)
    else:
        text = str(payload.get("prompt", ""))
    return "prefix:" + text[:PREFIX_CHARS]


def _score(key: str, url: str) -> int:
    digest = hashlib.blake2b(f"{key}\x00{url}".encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class EnginePool:
    """The engines at ``urls``, each an :class:`Upstream` with its own connection pool.

    It answers what the gateway asks of its one engine (``get``, ``known_models``,
    ``post_json``, ``retries``) and adds :meth:`choose`, :meth:`failed` and :meth:`post_all`.
    """

    def __init__(self, urls: Iterable[str], key: str | None, read_timeout_s: float,
                 keepalive_s: float = 2.0, max_connections: int = 256,
                 check_interval_s: float = 2.0, load_factor: float = 1.5) -> None:
        self.engines = [Upstream(u, key, read_timeout_s, keepalive_s, max_connections)
                        for u in dict.fromkeys(urls)]
        if not self.engines:
            raise ValueError("an engine pool needs at least one engine URL")
        self.url = self.engines[0].url
        self.key = key
        self.check_interval_s = check_interval_s
        self.load_factor = load_factor
        self.healthy: dict[str, bool] = {e.url: True for e in self.engines}  # optimistic start
        self.why: dict[str, str] = {e.url: "not checked yet" for e in self.engines}
        self.served: dict[str, int] = {e.url: 0 for e in self.engines}
        self._task: asyncio.Task[None] | None = None

    # -- choosing -------------------------------------------------------------------------

    def ranked(self, key: str, model: str | None = None) -> list[Upstream]:
        """Healthy engines (serving ``model`` where any is known to), best first for ``key``."""
        self._watch()
        up = [e for e in self.engines if self.healthy[e.url]]
        if model is not None:
            serving = [e for e in up if model in e.models]
            up = serving or up
        return sorted(up, key=lambda e: _score(key, e.url), reverse=True)

    def choose(self, key: str, model: str | None = None,
               exclude: Iterable[Upstream] = ()) -> Upstream:
        """The engine for affinity ``key`` (HTTPError 503 when none is healthy)."""
        skip = {e.url for e in exclude}
        ranked = [e for e in self.ranked(key, model) if e.url not in skip]
        if not ranked:
            raise HTTPError(503, "no engine is available", "engine_unavailable")
        mean = sum(e.inflight for e in ranked) / len(ranked)
        bound = self.load_factor * mean + 2
        engine = next((e for e in ranked if e.inflight <= bound), ranked[0])
        self.served[engine.url] += 1
        return engine

    def failed(self, engine: Upstream, why: str) -> None:
        """Take ``engine`` out of rotation until a health check finds it answering."""
        if self.healthy.get(engine.url):
            log.warning("engine %s left the rotation: %s", engine.url, why)
        self.healthy[engine.url] = False
        self.why[engine.url] = why

    # -- health ---------------------------------------------------------------------------

    def _watch(self) -> None:
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # called from a worker thread: the serving loop's task runs already
            self._task = loop.create_task(self._checks())

    async def _checks(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.check_interval_s)

    async def check(self) -> None:
        """Ask every engine whether it serves; update the rotation."""
        await asyncio.gather(*(self._check(e) for e in self.engines))

    async def _check(self, engine: Upstream) -> None:
        try:
            status, data = await engine.get("/v1/models", 3)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return self.failed(engine, f"unreachable ({exc.__class__.__name__})")
        if status != 200:
            why = ("it does not accept this gateway's key" if status in (401, 403)
                   else f"it answered {status}")
            return self.failed(engine, why)
        try:
            engine.set_models({m["id"] for m in orjson.loads(data).get("data", [])})
        except (ValueError, KeyError, TypeError, AttributeError):
            return self.failed(engine, "its model list does not parse")
        if not self.healthy[engine.url]:
            log.warning("engine %s is back in the rotation", engine.url)
        self.healthy[engine.url] = True
        self.why[engine.url] = "ok"

    def status(self) -> dict[str, str]:
        """Each engine's state: ``ok`` or why it is out of the rotation."""
        return {e.url: ("ok" if self.healthy[e.url] else self.why[e.url]) for e in self.engines}

    # -- what the gateway asks of one engine ---------------------------------------------

    @property
    def retries(self) -> int:
        return sum(e.retries for e in self.engines)

    @property
    def models(self) -> set[str]:
        return set().union(*(e.models for e in self.engines))

    async def known_models(self, refresh: bool = False) -> set[str]:
        """The names the healthy engines serve (503 when none answers)."""
        names: set[str] = set()
        answered = False
        for engine in self.ranked(""):
            try:
                names |= await engine.known_models(refresh)
                answered = True
            except HTTPError:
                self.failed(engine, "its model list could not be read")
        if not answered:
            raise HTTPError(503, "the engine is unavailable", "engine_unavailable")
        return names

    async def get(self, path: str, timeout: float) -> tuple[int, bytes]:
        """GET from the first healthy engine that answers."""
        last: BaseException | None = None
        for engine in self.ranked(""):
            try:
                return await engine.get(path, timeout)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.failed(engine, f"unreachable ({exc.__class__.__name__})")
                last = exc
        raise last or aiohttp.ClientConnectionError("no engine is available")

    async def post_json(self, path: str, body: dict[str, Any],
                        timeout: float = 300) -> tuple[int, str]:
        """POST to every healthy engine (adapters load into all); the worst answer."""
        results = await self.post_all(path, body, timeout)
        return max(results, key=lambda r: r[0]) if results else (
            503, "no engine is available")

    async def post_all(self, path: str, body: dict[str, Any],
                       timeout: float = 300) -> list[tuple[int, str]]:
        engines = self.ranked("")
        return list(await asyncio.gather(*(e.post_json(path, body, timeout) for e in engines)))

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for engine in self.engines:
            await engine.aclose()
