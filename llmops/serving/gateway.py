"""The gateway: an OpenAI-compatible front for the engine that logs every request and feedback.

It is a Starlette app assembled from one module per concern: ``auth`` (keys and
scopes, Starlette's authentication middleware), ``limits`` (request caps and per-key
limits), ``proxy`` (the OpenAI routes and their stream relay), ``chain_routes``,
``feedback_routes``, ``rollout_routes`` (and ``rollouts``, which routes a chain's traffic
between the arms of its running rollout), ``health``, ``admin`` and ``page`` (the feedback page); the
state they share is a ``GatewayState``. Every response carries the server's
``X-Request-Id``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware

from llmops.privacy import Redactor
from llmops.serving.admin import admin_routes
from llmops.serving.auth import HostCheck, KeyRing, allowed_hosts, auth_middleware, check_exposure
from llmops.serving.chain_routes import chain_routes
from llmops.serving.chains import ChainServer
from llmops.serving.config import EndpointConfig
from llmops.serving.feedback_routes import feedback_routes
from llmops.serving.health import health_routes
from llmops.serving.openapi import openapi_routes
from llmops.serving.page import widget_middleware, widget_routes
from llmops.serving.pool import EnginePool
from llmops.serving.proxy import proxy_routes
from llmops.serving.request_index import RequestIndex
from llmops.serving.rollout_routes import rollout_routes
from llmops.serving.rollouts import RolloutRouter
from llmops.serving.state import GatewayState
from llmops.serving.upstream import Upstream
from llmops.serving.wal import WriteAheadLog
from llmops.telemetry import flush_tracing

__all__ = ["Gateway"]


class _ServerSend:
    """The outermost layer: puts the server's own ``send`` in the scope (``llmops.send``).

    The stream relay sends its body chunks there, past the middlewares' ``send``
    wrappers, which only watch for the response's start (that still goes through them).
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope["llmops.send"] = send
        await self.app(scope, receive, send)


class Gateway:
    """The ASGI app (``gateway.app``) and the state behind it (``gateway.state``).

    ``engine_url`` is the engine, or a list of engines (an :class:`EnginePool` when more than
    one). ``engine_key`` is sent to the engine with every request; ``engine_alive`` tells
    whether the engine process this gateway started still runs (None: started elsewhere);
    ``redactor`` redacts what is stored (``llmops.privacy``; None: stored as sent).
    """

    def __init__(self, config: EndpointConfig, env: str, engine_url: str | list[str], keys: KeyRing,
                 wal: WriteAheadLog, requests: RequestIndex, chains: ChainServer | None = None,
                 adapters: Any = None, engine_key: str | None = None,
                 engine_alive: Callable[[], bool] | None = None,
                 rollouts: RolloutRouter | None = None,
                 redactor: Redactor | None = None) -> None:
        check_exposure(config.gateway.host, keys)
        gw = config.gateway
        upstream: Upstream | EnginePool
        if isinstance(engine_url, list) and len(engine_url) > 1:
            upstream = EnginePool(engine_url, engine_key, gw.upstream_timeout_s,
                                  gw.upstream_keepalive_s, gw.upstream_max_connections,
                                  gw.engine_check_interval_s)
        else:
            upstream = Upstream(engine_url if isinstance(engine_url, str) else engine_url[0],
                                engine_key, gw.upstream_timeout_s, gw.upstream_keepalive_s,
                                gw.upstream_max_connections)
        self.state = GatewayState(config, env, upstream, keys, wal, requests, chains, adapters,
                                  engine_alive, rollouts, redactor)
        self.wal = wal
        self.app = _ServerSend(Starlette(
            routes=[*proxy_routes(self.state), *chain_routes(self.state),
                    *rollout_routes(self.state),
                    *feedback_routes(self.state), *health_routes(self.state),
                    *admin_routes(self.state), *openapi_routes(config.gateway),
                    *widget_routes(config.gateway, keys.required)],  # the page at / and widget.js
            middleware=[Middleware(HostCheck, allowed=allowed_hosts(config.gateway, keys)),
                        *widget_middleware(config.gateway), auth_middleware(keys)],
            lifespan=self._lifespan))

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        if self.state.rollouts is not None:
            await run_in_threadpool(self.state.rollouts.start)
        yield
        if self.state.rollouts is not None:
            await run_in_threadpool(self.state.rollouts.stop)
        await run_in_threadpool(flush_tracing)  # the last requests' spans
        await self.aclose()  # the engine connections close with the server

    async def aclose(self) -> None:
        await self.state.upstream.aclose()
