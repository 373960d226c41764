"""``/healthz`` (the process answers), ``/readyz`` (it can serve) and ``/metrics`` (a key with
the ``metrics`` scope: it names keys, chains and adapters).

Ready means: the engine this gateway started is alive and is the one answering
(it accepts this gateway's key; another engine on the port answers 401), and the
write-ahead log is keeping up with Delta. ``/readyz`` names what is wrong, never
with exception text.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmops.serving.auth import require
from llmops.serving.errors import HTTPError
from llmops.serving.pool import EnginePool
from llmops.serving.state import GatewayState

__all__ = ["health_routes"]


async def engine_check(gw: GatewayState) -> str:
    """``ok``, or why the engine cannot serve."""
    if gw.engine_alive is not None and not gw.engine_alive():
        return "the engine process has exited"
    if isinstance(gw.upstream, EnginePool):
        await gw.upstream.check()
        states = gw.upstream.status().values()
        up = sum(state == "ok" for state in states)
        # ready while one engine serves; the others' reasons are in the gateway's log
        return "ok" if up else f"none of the {len(states)} engines answers"
    try:
        status, _ = await gw.upstream.get("/v1/models", 3)
    except (aiohttp.ClientError, TimeoutError):
        return "the engine is unreachable"
    if status in (401, 403):
        return "the engine on this port does not accept this gateway's key (not ours)"
    return "ok" if status == 200 else f"the engine answered {status}"


def log_check(gw: GatewayState) -> str:
    """``ok``, or how the write-ahead log is failing to keep up."""
    since = gw.wal.failing_since
    if since is not None and time.monotonic() - since > gw.cfg.log_unready_after_s:
        return f"the log has failed to flush for {time.monotonic() - since:.0f} s"
    backlog = gw.wal.backlog_rows()
    if backlog > gw.cfg.log_backlog_limit:
        return f"{backlog} logged rows wait for a flush (limit {gw.cfg.log_backlog_limit})"
    return "ok"


def health_routes(gw: GatewayState) -> list[Route]:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    last: dict[str, Any] = {"at": -1e9, "engine": "", "asking": None}

    async def cached_engine_check() -> str:
        # /readyz needs no key: a flood of it must not become a flood at the engine. One
        # check at a time; callers that arrive while it runs share its answer.
        if time.monotonic() - last["at"] < gw.cfg.readiness_cache_s:
            return str(last["engine"])
        if last["asking"] is None:
            async def ask() -> str:
                try:
                    last["engine"] = await engine_check(gw)
                    last["at"] = time.monotonic()
                    return str(last["engine"])
                finally:
                    last["asking"] = None

            last["asking"] = asyncio.ensure_future(ask())
        return str(await asyncio.shield(last["asking"]))

    async def readyz(request: Request) -> Response:
        engine, log = await cached_engine_check(), log_check(gw)
        ready = engine == "ok" and log == "ok"
        body: dict[str, object] = {"ready": ready, "engine": engine, "log": log}
        if isinstance(gw.upstream, EnginePool):  # how many serve, not where they are
            states = gw.upstream.status().values()
            body["engines"] = {"serving": sum(s == "ok" for s in states), "total": len(states)}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        try:  # it names keys, chains and adapters: a key with the metrics scope only
            require(request, "metrics")
        except HTTPError as err:
            return err.response(gw.new_request_id())
        gw.metrics.log_flush_failures.set(gw.wal.flush_failures)
        gw.metrics.log_backlog.set(gw.wal.backlog_rows())
        gw.metrics.upstream_retries.set(gw.upstream.retries)
        return Response(gw.metrics.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    return [Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"])]
