"""The gateway: an OpenAI-compatible front for the engine that logs every request and feedback.

Proxied endpoints pass the engine's bytes through unchanged (streams included);
only what the inference log needs is parsed. Every response carries
``X-Request-Id``. A request's log row is made durable (write-ahead log) before
the client gets its answer, or, for a stream, its final ``[DONE]`` event.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llmops.feedback.records import feedback_problem
from llmops.serving.adapters import AdapterRegistry
from llmops.serving.admin import admin_routes, ensure_adapter
from llmops.serving.auth import ApiKey, KeyRing
from llmops.serving.chains import ChainServer
from llmops.serving.config import EndpointConfig
from llmops.serving.feedback_store import RequestIndex
from llmops.serving.metrics import GatewayMetrics
from llmops.serving.wal import WriteAheadLog, utcnow
from llmops.serving.widget import widget_middleware, widget_routes

__all__ = ["Gateway", "HTTPError"]

_RID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class HTTPError(Exception):
    """An error answered to the client in OpenAI's error shape."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind

    def response(self, request_id: str) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.kind,
                                       "code": self.status}},
                            status_code=self.status, headers={"X-Request-Id": request_id})


def _loads(data: bytes) -> Any:
    try:
        import orjson

        return orjson.loads(data)
    except ImportError:  # pragma: no cover
        return json.loads(data)


class Gateway:
    """The ASGI app (``gateway.app``) and everything it holds."""

    def __init__(self, config: EndpointConfig, env: str, engine_url: str, keys: KeyRing,
                 wal: WriteAheadLog, requests: RequestIndex, chains: ChainServer | None = None,
                 adapters: AdapterRegistry | None = None) -> None:
        self.cfg = config.gateway
        self.env = env
        self.base_model = config.engine.served_model_name
        self.engine_url = engine_url.rstrip("/")
        self.keys = keys
        self.wal = wal
        self.requests = requests
        self.chains = chains
        self.adapters = adapters
        self.metrics = GatewayMetrics()
        self._models: set[str] = set()
        self._models_at = 0.0
        self._session: aiohttp.ClientSession | None = None
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/chains/{name}/invoke", self.invoke_chain, methods=["POST"]),
            Route("/v1/feedback", self.feedback, methods=["POST"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            *admin_routes(self),
            *widget_routes(self.cfg, keys.required),  # the feedback page at / and widget.js
        ], middleware=widget_middleware(self.cfg))

    # -- helpers -----------------------------------------------------------
    def session(self) -> aiohttp.ClientSession:
        """One pooled upstream session (created inside the serving event loop).

        aiohttp took 1.6 ms of gateway CPU per proxied 32-token stream where httpx
        took 4.1 ms; where the engine needs every core, that CPU is throughput.
        """
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5,
                                              sock_read=self.cfg.upstream_timeout_s),
                auto_decompress=False,
            )
        return self._session

    async def _get(self, path: str, timeout: float) -> tuple[int, bytes]:
        async with self.session().get(self.engine_url + path,
                                      timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            return resp.status, await resp.read()

    @staticmethod
    def _request_id(request: Request) -> str:
        given = request.headers.get("x-request-id", "")
        return given if _RID.match(given) else uuid.uuid4().hex

    def _authorize(self, request: Request, scope: str) -> ApiKey | None:
        if not self.keys.required:
            return None
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        token = token or request.headers.get("x-api-key")
        key = self.keys.find(token)
        if key is None:
            raise HTTPError(401, "a valid API key is required (Authorization: Bearer KEY)",
                            "authentication_error")
        if not self.keys.allows(key, scope):
            raise HTTPError(403, f"this API key lacks the '{scope}' scope", "permission_error")
        return key

    async def _body(self, request: Request) -> dict[str, Any]:
        return (await self._raw_body(request))[0]

    async def _raw_body(self, request: Request) -> tuple[dict[str, Any], bytes]:
        limit = self.cfg.max_body_bytes
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            raise HTTPError(413, f"request body over {limit} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise HTTPError(413, f"request body over {limit} bytes")
        try:
            payload = _loads(bytes(body))
        except ValueError as exc:
            raise HTTPError(400, "the body is not valid JSON") from exc
        if not isinstance(payload, dict):
            raise HTTPError(400, "the body must be a JSON object")
        return payload, bytes(body)

    def _check_generation(self, payload: dict[str, Any], kind: str) -> None:
        if not isinstance(payload.get("model"), str) or not payload["model"]:
            raise HTTPError(400, "'model' must be a non-empty string")
        if kind == "chat":
            msgs = payload.get("messages")
            if not isinstance(msgs, list) or not msgs or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) for m in msgs
            ):
                raise HTTPError(400, "'messages' must be a non-empty list of {role, content}")
        else:
            prompt = payload.get("prompt")
            if not isinstance(prompt, (str, list)) or not prompt:
                raise HTTPError(400, "'prompt' must be a string or a list")
        for field in ("max_tokens", "max_completion_tokens"):
            value = payload.get(field)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise HTTPError(400, f"'{field}' must be a positive integer")
            if value > self.cfg.max_tokens_cap:
                raise HTTPError(400, f"'{field}' is over this endpoint's cap of "
                                     f"{self.cfg.max_tokens_cap}")
        if "stream" in payload and not isinstance(payload["stream"], bool):
            raise HTTPError(400, "'stream' must be true or false")
        for field in ("temperature", "top_p"):
            value = payload.get(field)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise HTTPError(400, f"'{field}' must be a number")

    async def _known_models(self, refresh: bool = False) -> set[str]:
        if refresh or not self._models or time.monotonic() - self._models_at > 30:
            try:
                status, data = await self._get("/v1/models", 10)
                if status != 200:
                    raise ValueError(f"status {status}")
                self._models = {m["id"] for m in _loads(data).get("data", [])}
                self._models_at = time.monotonic()
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
                raise HTTPError(503, "the engine is unavailable", "engine_unavailable") from exc
        return self._models

    def _log(self, row: dict[str, Any]) -> None:
        full = {"env": self.env, "ts": utcnow(), **row}
        self.wal.append("inference_log", full)
        self.requests.add(row["request_id"])
        self.metrics.observe(full)

    def _row(self, request_id: str, endpoint: str, key: ApiKey | None, http: Request,
             **fields: Any) -> dict[str, Any]:
        client = key.name if key else (http.client.host if http.client else "")
        return {"request_id": request_id, "endpoint": endpoint, "client": client, **fields}

    # -- proxied OpenAI endpoints -------------------------------------------
    async def chat_completions(self, request: Request) -> Response:
        return await self._proxy(request, "/v1/chat/completions", "chat")

    async def completions(self, request: Request) -> Response:
        return await self._proxy(request, "/v1/completions", "text")

    async def _proxy(self, request: Request, endpoint: str, kind: str) -> Response:
        start = time.perf_counter()
        rid = self._request_id(request)
        key: ApiKey | None = None
        payload: dict[str, Any] = {}
        raw = b""
        try:
            key = self._authorize(request, "invoke")
            payload, raw = await self._raw_body(request)
            self._check_generation(payload, kind)
            model = payload["model"]
            if model not in await self._known_models() and model not in await self._known_models(
                    refresh=True):
                raise HTTPError(404, f"model '{model}' does not exist", "model_not_found")
        except HTTPError as err:
            if err.status not in (401, 403, 413):
                self._log(self._row(rid, endpoint, key, request, model=str(payload.get("model", "")),
                                    request=json.dumps(payload)[:65536] if payload else "",
                                    response=err.message, status=err.status,
                                    latency_ms=(time.perf_counter() - start) * 1000))
            return err.response(rid)

        adapter = model if model != self.base_model else None
        # the client's own bytes go upstream unchanged; the log keeps them as text
        base = self._row(rid, endpoint, key, request, model=model, adapter=adapter,
                         request=raw.decode("utf-8", "replace"))
        try:
            resp = await self.session().post(
                self.engine_url + endpoint, data=raw,
                headers={"content-type": "application/json", "x-request-id": rid})
        except (aiohttp.ClientError, TimeoutError) as exc:
            err = HTTPError(503, f"the engine is unavailable ({exc.__class__.__name__})",
                            "engine_unavailable")
            self._log({**base, "response": err.message, "status": 503,
                       "latency_ms": (time.perf_counter() - start) * 1000})
            return err.response(rid)

        status = resp.status
        if not payload.get("stream") or status != 200:
            try:
                data = await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                data = b'{"error": {"message": "the engine timed out", "code": 503}}'
                status = 503
            finally:
                resp.release()
            text, usage = "", {}
            try:
                body = _loads(data)
                usage = body.get("usage") or {}
                choice = (body.get("choices") or [{}])[0]
                text = (choice.get("message") or {}).get("content") or choice.get("text") or ""
                if status >= 400:
                    text = str((body.get("error") or {}).get("message", data[:2000]))
            except (ValueError, AttributeError, IndexError):
                text = data[:2000].decode("utf-8", "replace")
            self._log({**base, "response": text, "status": status,
                       "latency_ms": (time.perf_counter() - start) * 1000,
                       "prompt_tokens": usage.get("prompt_tokens"),
                       "completion_tokens": usage.get("completion_tokens")})
            return Response(data, status_code=status, headers={
                "X-Request-Id": rid, "content-type": resp.headers.get("content-type",
                                                                      "application/json")})

        return StreamingResponse(self._relay(resp, base, start), status_code=200,
                                 media_type="text/event-stream", headers={"X-Request-Id": rid})

    async def _relay(self, resp: aiohttp.ClientResponse, base: dict[str, Any],
                     start: float) -> AsyncIterator[bytes]:
        """Pass the engine's SSE bytes through; parse only the text and usage for the log."""
        parts: list[str] = []
        usage: dict[str, Any] = {}
        chunks = 0
        pending = b""
        logged = False

        def log(status: int) -> None:
            nonlocal logged
            logged = True
            self._log({**base, "response": "".join(parts), "status": status,
                       "latency_ms": (time.perf_counter() - start) * 1000,
                       "prompt_tokens": usage.get("prompt_tokens"),
                       "completion_tokens": usage.get("completion_tokens", chunks)})

        try:
            async for raw in resp.content.iter_any():
                pending += raw
                *lines, pending = pending.split(b"\n")
                done = False
                for line in lines:
                    if not line.startswith(b"data: "):
                        continue
                    if line.startswith(b"data: [DONE]"):
                        done = True
                        continue
                    try:
                        event = _loads(line[6:])
                    except ValueError:
                        continue
                    if event.get("usage"):
                        usage = event["usage"]
                    for choice in event.get("choices") or ():
                        piece = (choice.get("delta") or {}).get("content") or choice.get("text")
                        if piece:
                            parts.append(piece)
                            chunks += 1
                if done and not logged:
                    log(200)  # durable before the client sees the end of the stream
                yield raw
        except (aiohttp.ClientError, TimeoutError):
            if not logged:
                log(503)
            raise
        finally:
            resp.release()
            if not logged:
                log(499)  # the client went away before the end

    async def models(self, request: Request) -> Response:
        rid = self._request_id(request)
        try:
            self._authorize(request, "invoke")
            status, data = await self._get("/v1/models", 10)
        except HTTPError as err:
            return err.response(rid)
        except (aiohttp.ClientError, TimeoutError):
            return HTTPError(503, "the engine is unavailable", "engine_unavailable").response(rid)
        return Response(data, status_code=status,
                        headers={"X-Request-Id": rid, "content-type": "application/json"})

    # -- chains ----------------------------------------------------------------
    async def invoke_chain(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        from llmops.errors import LlmopsError

        start = time.perf_counter()
        rid = self._request_id(request)
        name = request.path_params["name"]
        endpoint = f"/v1/chains/{name}/invoke"
        key: ApiKey | None = None
        question = ""
        try:
            key = self._authorize(request, "invoke")
            payload = await self._body(request)
            question = payload.get("question")
            if not isinstance(question, str) or not question.strip():
                raise HTTPError(400, "'question' must be a non-empty string")
            alias = payload.get("alias", self.cfg.default_chain_alias)
            if not isinstance(alias, str):
                raise HTTPError(400, "'alias' must be a string")
            if self.chains is None:
                raise HTTPError(404, "this gateway serves no chains")
            try:
                served = await run_in_threadpool(self.chains.get, name, alias)
                if served.adapter_ref and served.adapter not in await self._known_models():
                    await ensure_adapter(self, served.adapter_ref)  # the version it was gated with
                answer = await run_in_threadpool(self.chains.answer, served, question)
            except HTTPError:
                raise
            except LlmopsError as exc:
                if exc.__class__.__name__ in ("ModelNotFoundError", "BadReferenceError"):
                    raise HTTPError(404, f"chain '{name}@{alias}' does not exist",
                                    "chain_not_found") from exc
                raise HTTPError(503, str(exc).splitlines()[0], "chain_error") from exc
            except Exception as exc:  # noqa: BLE001 - the engine or the chain failed
                raise HTTPError(503, f"the chain failed: {exc.__class__.__name__}",
                                "chain_error") from exc
        except HTTPError as err:
            if err.status not in (401, 403, 413):
                self._log(self._row(rid, endpoint, key, request, chain=name,
                                    request=json.dumps({"question": question})[:65536],
                                    response=err.message, status=err.status,
                                    latency_ms=(time.perf_counter() - start) * 1000))
            return err.response(rid)
        versions = {
            "chain": f"{served.name}/{served.version}", "prompt": answer.get("prompt"),
            "index": answer.get("index_version") or served.index_version or None,
            "model": served.chat_model, "adapter": served.adapter,
        }
        self._log(self._row(
            rid, endpoint, key, request, model=served.chat_model, adapter=served.adapter,
            chain=served.name, chain_version=served.version, prompt=served.prompt,
            prompt_version=served.prompt_version, request=json.dumps({"question": question}),
            response=answer.get("answer", ""), status=200,
            latency_ms=(time.perf_counter() - start) * 1000,
        ))
        return JSONResponse({"request_id": rid, "answer": answer.get("answer", ""),
                             "sources": answer.get("sources", []), "versions": versions},
                            headers={"X-Request-Id": rid})

    # -- feedback --------------------------------------------------------------
    async def feedback(self, request: Request) -> Response:
        rid = self._request_id(request)
        try:
            key = self._authorize(request, "feedback")
            payload = await self._body(request)
            target = payload.get("request_id")
            if not isinstance(target, str) or not target:
                raise HTTPError(400, "'request_id' must be a string")
            rating, score = payload.get("rating"), payload.get("score")
            problem = feedback_problem(
                rating, score, payload.get("correction"), payload.get("comment"),
                user=payload.get("user"), source=payload.get("source"))
            if problem:
                raise HTTPError(400, problem)
            if not self.requests.contains(target):
                raise HTTPError(404, f"request '{target}' is unknown", "request_not_found")
        except HTTPError as err:
            return err.response(rid)
        feedback_id = uuid.uuid4().hex
        self.wal.append("feedback", {
            "feedback_id": feedback_id, "request_id": target, "ts": utcnow(), "rating": rating,
            "score": score, "correction": payload.get("correction"), "comment": payload.get("comment"),
            "source": payload.get("source") or "api",
            "user": payload.get("user") or (key.name if key else None),
        })
        kind = {1: "thumbs_up", -1: "thumbs_down"}.get(rating, "score" if score else "text")
        self.metrics.feedback.labels(kind=kind).inc()
        return JSONResponse({"feedback_id": feedback_id, "request_id": target},
                            headers={"X-Request-Id": rid})

    # -- operations ------------------------------------------------------------
    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        try:
            status, _ = await self._get("/health", 2)
            ok = status == 200
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        return JSONResponse({"ready": ok, "log_error": self.wal.last_error},
                            status_code=200 if ok else 503)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
