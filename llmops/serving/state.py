"""What the gateway's routes share: its settings, the engine, the keys, the log and the metrics.

Routes (``proxy``, ``chain_routes``, ``feedback_routes``, ``health``, ``admin``) take a
``GatewayState`` and use only its public methods.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request

from llmops.lakehouse import inference_row
from llmops.privacy import Redactor, redacted_row
from llmops.serving.auth import ApiKey, KeyRing, require
from llmops.serving.chains import ChainServer
from llmops.serving.config import EndpointConfig
from llmops.serving.errors import HTTPError
from llmops.serving.limits import KeyLimiter
from llmops.serving.metrics import GatewayMetrics
from llmops.serving.pool import EnginePool
from llmops.serving.redaction import RedactionCounter
from llmops.serving.request_index import RequestIndex, new_request_id, owner_of
from llmops.serving.rollouts import RolloutRouter
from llmops.serving.sessions import Sessions
from llmops.serving.tracing import finish_span, operation_name
from llmops.serving.upstream import Upstream
from llmops.serving.wal import WriteAheadLog, utcnow

__all__ = ["GatewayState", "logged_request"]


log = logging.getLogger(__name__)
_RID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_CHAIN_PATH = re.compile(r"^/v1/chains/[^/]+/invoke$")


def logged_request(payload: dict[str, Any], raw: bytes | None = None) -> str:
    """What ``inference_log`` keeps of a request: its bytes (``raw``, else ``payload`` as
    JSON), with a prefix-cache salt replaced by its fingerprint. A salt keeps a caller's
    cached prompts from other callers', so it stays a secret; the fingerprint still shows
    which requests shared one (an evaluation's run)."""
    salt = payload.get("cache_salt")
    if not isinstance(salt, str):
        return raw.decode("utf-8", "replace") if raw is not None else json.dumps(payload)
    body = orjson.loads(raw) if raw is not None else dict(payload)
    body["cache_salt"] = "sha256:" + hashlib.sha256(salt.encode()).hexdigest()[:16]
    return orjson.dumps(body).decode()


class GatewayState:
    """One gateway's state; ``adapters`` is the adapter registry (None: no adapters)."""

    def __init__(self, config: EndpointConfig, env: str, upstream: Upstream | EnginePool,
                 keys: KeyRing,
                 wal: WriteAheadLog, requests: RequestIndex, chains: ChainServer | None = None,
                 adapters: Any = None, engine_alive: Callable[[], bool] | None = None,
                 rollouts: RolloutRouter | None = None,
                 redactor: Redactor | None = None) -> None:
        self.cfg = config.gateway
        self.env = env
        self.base_model = config.engine.served_model_name
        self.upstream = upstream
        self.keys = keys
        self._key_names = frozenset(k.name for k in keys.keys)  # the serving metrics' key label
        self.limiter = KeyLimiter()
        self.wal = wal
        self.requests = requests
        self.chains = chains
        self.adapters = adapters
        self.engine_alive = engine_alive
        self.rollouts = rollouts  # running rollouts of the chains (None: chains not served)
        self.metrics = GatewayMetrics()
        self.sessions = Sessions()  # widget sessions (llmops.serving.sessions)
        self.served_chains: set[str] = set()  # names answered at least once: metric labels
        self.redactor = redactor  # what is stored is redacted (None: stored as sent)
        if redactor is not None:
            self.metrics.registry.register(RedactionCounter(redactor))

    @staticmethod
    def new_request_id() -> str:
        """The server's id for a request: the key of its log row, never chosen by the client."""
        return new_request_id()

    @staticmethod
    def client_request_id(request: Request) -> str | None:
        """The ``X-Request-Id`` the client sent, where it is a well-formed id (kept beside ours)."""
        given = request.headers.get("x-request-id", "")
        return given if _RID.match(given) else None

    async def read_json(self, request: Request) -> tuple[dict[str, Any], bytes]:
        """The body as a JSON object and its bytes; 415 unless sent as ``application/json``
        (a cross-site form or ``text/plain`` POST from a browser cannot be), 413 over
        ``max_body_bytes``, 408 when it has not all arrived within ``body_timeout_s``, 400 if
        not JSON."""
        limit = self.cfg.max_body_bytes
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            raise HTTPError(413, f"request body over {limit} bytes")
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/json":
            raise HTTPError(415, "send the body as JSON, with Content-Type: application/json",
                            "unsupported_media_type")
        body = bytearray()
        try:
            async with asyncio.timeout(self.cfg.body_timeout_s):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > limit:
                        raise HTTPError(413, f"request body over {limit} bytes")
        except TimeoutError:
            raise HTTPError(408, f"the request body did not arrive within "
                                 f"{self.cfg.body_timeout_s:g} s", "request_timeout") from None
        try:
            payload = orjson.loads(bytes(body))
        except ValueError as exc:
            raise HTTPError(400, "the body is not valid JSON") from exc
        if not isinstance(payload, dict):
            raise HTTPError(400, "the body must be a JSON object")
        return payload, bytes(body)

    def row(self, request_id: str, endpoint: str, key: ApiKey | None, http: Request,
            **fields: Any) -> dict[str, Any]:
        """An ``inference_log`` row: the client is the key's name (its address without keys)."""
        client = key.name if key else (http.client.host if http.client else "")
        return inference_row(request_id, endpoint, client=client,
                             client_request_id=self.client_request_id(http), **fields)

    def admit(self, request: Request, scope: str | tuple[str, ...],
              endpoint: str) -> tuple[ApiKey | None, bool]:
        """The caller's key, checked for ``scope``, then counted against its limits.

        Every route calls this first, before it reads or checks the body: a key's refused
        requests count to its limits as its answered ones do, so a flood of bad requests
        is answered 429 (and writes no rows) like any other. Returns the key and whether a
        concurrency slot was taken (``release`` it when the request is done).
        """
        key = require(request, scope)
        try:
            return key, self.limiter.acquire(key)
        except HTTPError as err:
            if err.status == 429 and key is not None:
                self.rate_limited(key, endpoint)
            raise

    def release(self, key: ApiKey | None, slot: bool) -> None:
        """Give back the concurrency slot ``admit`` took (nothing when it took none)."""
        if slot:
            self.limiter.release(key)

    def log(self, row: dict[str, Any], *, first_token_s: float | None = None,
            queue_s: float | None = None, span: Any = None) -> None:
        """Make ``row`` durable (write-ahead log), remember its id and count it.

        ``first_token_s`` (a stream's first token) and ``queue_s`` (its wait before the
        engine) feed the serving metrics; ``span``, the request's trace span, gets the
        row's outcome and is ended.
        """
        full = {"env": self.env, "ts": utcnow(), **redacted_row(self.redactor, row)}
        self.wal.append("inference_log", full)
        self.requests.add(row["request_id"], owner_of(row.get("client"), row.get("end_user")))
        labels = self.metric_labels(full)
        self.metrics.observe(full, labels)
        self.metrics.observe_genai(full, self.genai_labels(full, labels), first_token_s=first_token_s,
                                   queue_s=queue_s)
        if span is not None:
            finish_span(span, full)

    def redact(self, text: str | None) -> str | None:
        """``text`` as it may be stored (feedback's comment or correction)."""
        if self.redactor is None or text is None:
            return text
        return self.redactor.redact(text)

    def log_error(self, err: HTTPError, request_id: str, endpoint: str, key: ApiKey | None,
                  http: Request, payload: dict[str, Any], latency_ms: float,
                  span: Any = None, **fields: Any) -> None:
        """Log a refused request, except those refused before anyone was known or its body
        read (401, 403, 408, 413, 415) and those over a key's limits (429: a flood must not
        fill the tables); ``span`` (the request's) is ended either way."""
        if err.status in (401, 403, 408, 413, 415, 429):
            if span is not None:
                finish_span(span, {"request_id": request_id, "status": err.status,
                                   "response": err.message})
            return
        self.log(self.row(request_id, endpoint, key, http,
                          request=logged_request(payload)[:65536] if payload else "",
                          response=err.message, status=err.status, latency_ms=latency_ms,
                          **fields), span=span)

    def rate_limited(self, key: ApiKey, endpoint: str) -> None:
        """Count and log a 429 (its row is not written: a flood must not fill the tables)."""
        self.metrics.rate_limited.labels(key=key.name).inc()
        log.warning("rate limit: key %s refused on %s", key.name, endpoint)

    def metric_labels(self, row: dict[str, Any]) -> dict[str, str]:
        """Labels from names the gateway knows; anything a client made up is ``unknown``."""
        endpoint = row["endpoint"]
        if _CHAIN_PATH.match(endpoint):
            endpoint = "/v1/chains/{name}/invoke"
        model, adapter, chain = row.get("model") or "", row.get("adapter") or "", row.get("chain") or ""
        return {
            "endpoint": endpoint,
            "model": model if not model or self._serves(model) or model in self._chain_models()
            else "unknown",
            "adapter": adapter if not adapter or self._serves(adapter) else "unknown",
            "chain": chain if not chain or chain in self.served_chains else "unknown",
        }

    def genai_labels(self, row: dict[str, Any], labels: dict[str, str]) -> dict[str, str]:
        """The serving metrics' labels (``GENAI_LABELS``), each from a bounded set, from the
        row and its ``metric_labels``."""
        client = row.get("client") or ""
        return {"gen_ai_operation_name": operation_name(row["endpoint"]),
                "gen_ai_request_model": labels["adapter"] or labels["model"],
                "chain": labels["chain"],
                "key": client if client in self._key_names else "anonymous"}

    def _serves(self, name: str) -> bool:
        return name == self.base_model or name in self.upstream.models

    def _chain_models(self) -> set[str]:
        return self.chains.chat_models() if self.chains is not None else set()
