"""The OpenAI routes: the engine's bytes relayed unchanged, streams included.

Only what the inference log needs is parsed. A request's log row is made
durable (write-ahead log) before the client gets its answer, or, for a stream,
its final ``[DONE]`` event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmops.serving.auth import ApiKey
from llmops.serving.errors import HTTPError
from llmops.serving.limits import check_generation, with_default_max_tokens
from llmops.serving.pool import affinity_key
from llmops.serving.state import GatewayState, logged_request
from llmops.serving.tracing import engine_headers, name_span, start_span
from llmops.serving.upstream import Upstream

__all__ = ["proxy_routes"]

log = logging.getLogger(__name__)


def _end_user(payload: dict[str, Any]) -> str | None:
    user = payload.get("user")
    return user[:256] if isinstance(user, str) and user else None


def _without_paths(data: bytes) -> bytes:
    """The engine's model list without where its adapters lie on disk (vLLM names a LoRA
    adapter's folder as its ``root``): each ``root`` that is a path becomes the model's id."""
    try:
        body = orjson.loads(data)
        for model in body.get("data") or ():
            root = model.get("root")
            if isinstance(root, str) and root != model.get("id") and (
                    root.startswith(("/", "~", ".", "file:")) or "\\" in root):
                model["root"] = model.get("parent") or model.get("id")
        return orjson.dumps(body)
    except (ValueError, AttributeError, TypeError):
        return data


def proxy_routes(gw: GatewayState) -> list[Route]:
    async def chat_completions(request: Request) -> Response:
        return await _proxy(gw, request, "/v1/chat/completions", "chat")

    async def completions(request: Request) -> Response:
        return await _proxy(gw, request, "/v1/completions", "text")

    async def models(request: Request) -> Response:
        rid = gw.new_request_id()
        key, slot = None, False
        try:
            key, slot = gw.admit(request, "invoke", "/v1/models")
            status, data = await gw.upstream.get("/v1/models", 10)
        except HTTPError as err:
            return err.response(rid)
        except (aiohttp.ClientError, TimeoutError):
            return HTTPError(503, "the engine is unavailable", "engine_unavailable").response(rid)
        finally:
            gw.release(key, slot)
        return Response(_without_paths(data) if status == 200 else data, status_code=status,
                        headers={"X-Request-Id": rid, "content-type": "application/json"})

    return [Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"])]


async def _proxy(gw: GatewayState, request: Request, endpoint: str, kind: str) -> Response:
    start = time.perf_counter()
    rid = gw.new_request_id()
    span = start_span(endpoint, rid)
    key: ApiKey | None = None
    payload: dict[str, Any] = {}
    slot = False
    engine: Upstream | None = None  # the engine the request went to (one of a pool's)

    def release() -> None:
        nonlocal slot, engine
        if slot:
            slot = False
            gw.limiter.release(key)
        if engine is not None:
            engine.inflight -= 1
            engine = None

    try:
        # the key's limits first: its rejected requests count as its answered ones do
        key, slot = gw.admit(request, "invoke", endpoint)
        payload, raw = await gw.read_json(request)
        check_generation(payload, kind, gw.cfg)
        model = payload["model"]
        name_span(span, endpoint, model)
        known = await gw.upstream.known_models()
        if model not in known and model not in await gw.upstream.known_models(refresh=True):
            raise HTTPError(404, f"model '{model}' does not exist", "model_not_found")
    except HTTPError as err:
        release()
        gw.log_error(err, rid, endpoint, key, request, payload,
                     (time.perf_counter() - start) * 1000, model=str(payload.get("model", ""))[:256],
                     end_user=_end_user(payload), span=span)
        return err.response(rid)

    try:
        raw = with_default_max_tokens(payload, raw, min(gw.cfg.default_max_tokens,
                                                        gw.cfg.max_tokens_cap))
        adapter = model if model != gw.base_model else None
        # the client's own bytes go upstream (a default max_tokens added); the log keeps them
        base = gw.row(rid, endpoint, key, request, model=model, adapter=adapter,
                      end_user=_end_user(payload), request=logged_request(payload, raw))
        affinity = affinity_key(payload, request.headers.get("x-session-id"),
                                key.name if key is not None else "")
        resp, failure = None, None
        tried: list[Upstream] = []
        headers = {"content-type": "application/json", "x-request-id": rid, **engine_headers(span)}
        queue_s = time.perf_counter() - start
        while resp is None and len(tried) < 2:
            try:
                engine = gw.upstream.choose(affinity, model, exclude=tried)
            except HTTPError as err:
                failure = failure or err
                break
            engine.inflight += 1
            try:
                resp = await engine.post(endpoint, raw, headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                failure = HTTPError(503, f"the engine is unavailable ({exc.__class__.__name__})",
                                    "engine_unavailable")
                if not isinstance(exc, aiohttp.ClientConnectorError):
                    break
                # refused: the engine never saw the request, so a pool's next engine may take
                # it, once (with one engine, the 503 stands)
                gw.upstream.failed(engine, f"refused a connection ({exc.__class__.__name__})")
                engine.inflight -= 1
                tried.append(engine)
                engine = None
        if resp is None:
            failure = failure or HTTPError(503, "the engine is unavailable", "engine_unavailable")
            gw.log({**base, "response": failure.message, "status": 503,
                    "latency_ms": (time.perf_counter() - start) * 1000}, queue_s=queue_s, span=span)
            release()
            return failure.response(rid)
        if payload.get("stream") and resp.status == 200:
            return _RelayResponse(_Relay(resp, base, start, gw, span, queue_s), release, rid)
        answer = await _whole(gw, resp, base, start, rid, span, queue_s)
        release()
        return answer
    except BaseException:
        release()
        raise


_DONE = b"\ndata: [DONE]"  # the end-of-stream event, at the start of a line
_PARSE_AT = 32 * 1024  # bytes buffered before the log's parse catches up


class _Relay:
    """Pass the engine's SSE bytes through; parse only the text and usage for the log.

    The bytes go on as they arrive; the log's parse runs in batches (one JSON parse for
    all the events buffered, at the end of the stream or every ``_PARSE_AT`` bytes), so
    that a relayed chunk costs a list append and a search for the end-of-stream event.
    """

    def __init__(self, resp: aiohttp.ClientResponse, base: dict[str, Any], start: float,
                 gw: GatewayState, span: Any = None, queue_s: float | None = None) -> None:
        self.resp, self.base, self.start, self.gw = resp, base, start, gw
        self.span, self.queue_s = span, queue_s
        self.first_token_s: float | None = None  # when the engine's first event arrived
        self.parts: list[str] = []
        self.usage: dict[str, Any] = {}
        self.chunks = 0
        self.logged = False
        self._buffered: list[bytes] = []
        self._size = 0
        self._partial = b""  # a line cut by a read's boundary
        self._tail = b"\n"  # the last bytes seen; the stream's start is a line's start

    def feed(self, raw: bytes) -> bool:
        """Buffer ``raw`` for the log; True once the end-of-stream event has arrived."""
        if self.first_token_s is None:
            self.first_token_s = time.perf_counter() - self.start
        self._buffered.append(raw)
        self._size += len(raw)
        window = self._tail + raw
        self._tail = window[1 - len(_DONE):]
        done = _DONE in window
        if done or self._size >= _PARSE_AT:
            self.parse()
        return done

    def parse(self) -> None:
        """Read the text and usage of every complete event buffered."""
        if not self._buffered:
            return
        *lines, self._partial = (self._partial + b"".join(self._buffered)).split(b"\n")
        self._buffered.clear()
        self._size = 0
        payloads = [line[6:] for line in lines
                    if line.startswith(b"data: ") and not line.startswith(b"data: [DONE]")]
        if not payloads:
            return
        try:
            events = orjson.loads(b"[" + b",".join(payloads) + b"]")
        except ValueError:  # one bad event: parse them one by one, skipping what is not JSON
            events = []
            for payload in payloads:
                try:
                    events.append(orjson.loads(payload))
                except ValueError:
                    continue
        for event in events:
            if not isinstance(event, dict):
                continue
            if event.get("usage"):
                self.usage = event["usage"]
            for choice in event.get("choices") or ():
                piece = (choice.get("delta") or {}).get("content") or choice.get("text")
                if piece:
                    self.parts.append(piece)
                    self.chunks += 1

    def log(self, status: int) -> None:
        if self.logged:
            return
        self.logged = True
        self.parse()
        self.gw.log({**self.base, "response": "".join(self.parts), "status": status,
                     "latency_ms": (time.perf_counter() - self.start) * 1000,
                     "prompt_tokens": self.usage.get("prompt_tokens"),
                     "completion_tokens": self.usage.get("completion_tokens", self.chunks)},
                    first_token_s=self.first_token_s if status == 200 else None,
                    queue_s=self.queue_s, span=self.span)

    async def events(self) -> AsyncIterator[bytes]:
        try:
            async for raw in self.resp.content.iter_any():
                if self.feed(raw):
                    self.log(200)  # durable before the client sees the end of the stream
                yield raw
        except (aiohttp.ClientError, TimeoutError):
            self.log(503)
            raise

    def close(self) -> None:
        self.resp.release()
        self.log(499)  # the client went away before the end


class _RelayResponse(Response):
    """The relayed stream as a bare ASGI response.

    Its clean-up (log row, upstream connection, key's slot) runs however it ends, even when
    the client is gone before the first byte. A client that disconnects stops the relay (and
    so the engine's generation) at once: one small task waits for the disconnect and cancels
    the relay. Starlette's ``StreamingResponse`` does the same with an anyio task group per
    response, which costs more CPU per stream than this route can spare.
    """

    media_type = "text/event-stream"

    def __init__(self, relay: _Relay, release: Callable[[], None], rid: str) -> None:
        self.status_code = 200
        self.init_headers({"X-Request-Id": rid})
        self._relay, self._release = relay, release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        state = {"streaming": True, "gone": False}

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if state["streaming"]:
                state["gone"] = True
                task.cancel()

        loop = asyncio.get_running_loop()
        watcher = loop.create_task(watch())
        patience = self._relay.gw.cfg.send_timeout_s
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": self.raw_headers})
            send = scope.get("llmops.send", send)  # the body past the middlewares' wrappers
            # a client that stops reading fills the socket's buffers and a send waits: past
            # send_timeout_s it is dropped (so no stream holds its slot, or a shutdown, forever)
            async with asyncio.timeout(None) as deadline:
                async for chunk in self._relay.events():
                    deadline.reschedule(loop.time() + patience)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    deadline.reschedule(None)
                state["streaming"] = False
                deadline.reschedule(loop.time() + patience)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not state["gone"]:
                raise
            task.uncancel()  # the client went away: the relay stops, nothing to answer
        except TimeoutError:
            log.warning("a stream's client took nothing for %g s: dropped", patience)
        finally:
            state["streaming"] = False
            watcher.cancel()
            self._relay.close()
            self._release()


async def _whole(gw: GatewayState, resp: aiohttp.ClientResponse, base: dict[str, Any],
                 start: float, rid: str, span: Any = None,
                 queue_s: float | None = None) -> Response:
    status = resp.status
    try:
        data = await resp.read()
    except (aiohttp.ClientError, TimeoutError):
        data = b'{"error": {"message": "the engine timed out", "code": 503}}'
        status = 503
    finally:
        resp.release()
    text, usage = "", {}
    try:
        body = orjson.loads(data)
        usage = body.get("usage") or {}
        choice = (body.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or choice.get("text") or ""
        if status >= 400:
            text = str((body.get("error") or {}).get("message", data[:2000]))
    except (ValueError, AttributeError, IndexError):
        text = data[:2000].decode("utf-8", "replace")
    gw.log({**base, "response": text, "status": status,
            "latency_ms": (time.perf_counter() - start) * 1000,
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens")}, queue_s=queue_s, span=span)
    return Response(data, status_code=status, headers={
        "X-Request-Id": rid, "content-type": resp.headers.get("content-type", "application/json")})
