"""``POST /v1/chains/{name}/invoke``: a registered chain's answer, with the versions behind it."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from opentelemetry import trace
from starlette.authentication import has_required_scope
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmops.errors import LlmopsError
from llmops.serving.admin import ensure_adapter
from llmops.serving.auth import ApiKey, widget_only
from llmops.serving.errors import HTTPError
from llmops.serving.pool import affinity_key
from llmops.serving.rollouts import Routed
from llmops.serving.sessions import SESSION_HEADER
from llmops.serving.state import GatewayState
from llmops.serving.tracing import start_span

__all__ = ["chain_routes", "redact_uris"]

log = logging.getLogger(__name__)
_URI = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


def redact_uris(text: str) -> str:
    """``text`` with every URI (which may carry a password or token) replaced by its scheme."""
    return _URI.sub(lambda m: m.group(0).split("://", 1)[0] + "://...", text)

_FIELDS = {"question", "alias", "user"}


def _check(payload: dict[str, Any], gw: GatewayState) -> tuple[str, str, str | None]:
    extra = set(payload) - _FIELDS
    if extra:
        raise HTTPError(400, f"unknown field(s) {', '.join(sorted(extra))}: send {{question, "
                             "alias?, user?}")
    question = payload.get("question")
    if not isinstance(question, str) or not question.strip():
        raise HTTPError(400, "'question' must be a non-empty string")
    if len(question) > gw.cfg.max_question_chars:
        raise HTTPError(400, f"the question is {len(question)} characters; this endpoint's cap "
                             f"is {gw.cfg.max_question_chars}")
    alias = payload.get("alias", gw.cfg.default_chain_alias)
    if not isinstance(alias, str) or not alias:
        raise HTTPError(400, "'alias' must be a non-empty string")
    user = payload.get("user")
    if user is not None and not isinstance(user, str):
        raise HTTPError(400, "'user' must be a string")
    return question, alias, (user or None) and user[:256]


def _client_error(exc: BaseException) -> HTTPError | None:
    """A 400 where the model endpoint refused the chain's request as the client's fault (a
    4xx: e.g. a question too long for the model's context); None for anything else.

    Logged as the client's error, it never counts against a rollout's arm as an error.
    """
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        status = getattr(seen, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500 and status not in (401, 403, 429):
            return HTTPError(400, f"the model refused the request ({status}): "
                                  f"{str(seen).splitlines()[0][:300] if str(seen) else ''}")
        seen = seen.__cause__ or seen.__context__
    return None


def _client(key: ApiKey | None, request: Request) -> str:
    """The caller, for a rollout whose arms are sticky per key: the key's name, else the address."""
    if key is not None:
        return "key:" + key.name
    return "addr:" + (request.client.host if request.client else "")


def chain_routes(gw: GatewayState) -> list[Route]:
    async def invoke(request: Request) -> Response:
        start = time.perf_counter()
        rid = gw.new_request_id()
        name = request.path_params["name"]
        endpoint = f"/v1/chains/{name}/invoke"
        span = start_span(endpoint, rid)
        began: list[float] = []  # when the chain started, in its worker thread
        key: ApiKey | None = None
        question, user, slot = "", None, False
        routed: Routed | None = None
        in_rollout: dict[str, str] = {}
        session: dict[str, str] = {}  # the widget session's header, for a widget key
        try:
            key, slot = gw.admit(request, ("invoke", "widget"), endpoint)
            payload, _ = await gw.read_json(request)
            question, alias, user = _check(payload, gw)
            if widget_only(key):
                if "alias" in payload:
                    raise HTTPError(403, "a widget key asks a chain at its default alias only",
                                    "permission_error")
                # the visitor is the session the gateway signed, whatever the page says
                token = request.headers.get(SESSION_HEADER)
                sid = gw.sessions.verify(token)
                if sid is None:
                    sid, token = gw.sessions.issue()
                session = {SESSION_HEADER: str(token)}
                user = f"session:{sid}"
            elif user is not None and user.startswith("session:"):
                raise HTTPError(400, "'user' values starting with 'session:' name the gateway's "
                                     "widget sessions: choose another")
            if gw.chains is None:
                raise HTTPError(404, "this gateway serves no chains")
            if (alias != gw.cfg.default_chain_alias and gw.rollouts is not None
                    and gw.rollouts.in_rollout(name)
                    and not has_required_scope(request, ["admin"])):
                # a caller may not step out of the split (nor into the candidate) at will
                raise HTTPError(403, f"chain '{name}' is in a rollout: its traffic is split by "
                                     "the rollout; only an admin key may ask for an alias",
                                "permission_error")
            if alias == gw.cfg.default_chain_alias and gw.rollouts is not None:
                routed = gw.rollouts.route(name, user, _client(key, request))
                if routed is not None:
                    in_rollout = {"rollout_id": routed.rollout_id, "rollout_arm": routed.arm}
            try:
                # over an engine pool: the caller's session or user, else the question
                affinity = affinity_key({"user": user, "prompt": question},
                                        caller=key.name if key is not None else "")
                if routed is not None:
                    served = await run_in_threadpool(gw.chains.get_version, name, routed.version,
                                                     affinity)
                else:
                    served = await run_in_threadpool(gw.chains.get, name, alias, affinity)
                if served.adapter_ref and served.adapter not in await gw.upstream.known_models():
                    await ensure_adapter(gw, served.adapter_ref)  # the version it was gated with
                def run() -> dict[str, Any]:
                    began.append(time.perf_counter())
                    return gw.chains.answer(served, question)

                # the chain's spans (retrieval, the model call) are children of the request's
                with trace.use_span(span, end_on_exit=False):
                    answer = await run_in_threadpool(run)
            except HTTPError:
                raise
            except LlmopsError as exc:
                refused = _client_error(exc)
                if refused is not None:
                    raise refused from exc
                if exc.__class__.__name__ in ("ModelNotFoundError", "BadReferenceError"):
                    raise HTTPError(404, f"chain '{name}@{alias}' does not exist",
                                    "chain_not_found") from exc
                # the message may name a store's URI (with its credentials): not for callers
                log.warning("chain %s@%s: %s", name[:256], alias[:256],
                            redact_uris(str(exc).splitlines()[0] if str(exc) else ""))
                raise HTTPError(503, f"the chain cannot be served now ({exc.__class__.__name__})",
                                "chain_error") from exc
            except Exception as exc:  # noqa: BLE001 - the engine or the chain failed
                refused = _client_error(exc)
                if refused is not None:
                    raise refused from exc
                raise HTTPError(503, f"the chain failed: {exc.__class__.__name__}",
                                "chain_error") from exc
        except HTTPError as err:
            gw.log_error(err, rid, endpoint, key, request, {"question": question[:65536]},
                         (time.perf_counter() - start) * 1000, chain=name[:256], end_user=user,
                         span=span, **in_rollout)
            return err.response(rid)
        finally:
            gw.release(key, slot)
        gw.served_chains.add(served.name)
        index_version = answer.get("index_version") or served.index_version or None
        versions = {
            "chain": f"{served.name}/{served.version}", "prompt": answer.get("prompt"),
            "index": index_version, "model": served.chat_model, "adapter": served.adapter,
        }
        logged: dict[str, Any] = {"question": question}
        if answer.get("messages"):
            logged["messages"] = answer["messages"]  # what the model was asked
        gw.log(gw.row(
            rid, endpoint, key, request, model=served.chat_model, adapter=served.adapter,
            chain=served.name, chain_version=served.version, prompt=served.prompt,
            prompt_version=served.prompt_version, index_version=index_version, end_user=user,
            request=json.dumps(logged, ensure_ascii=False), response=answer.get("answer", ""),
            status=200, latency_ms=(time.perf_counter() - start) * 1000, **in_rollout,
        ), queue_s=began[0] - start if began else None, span=span)
        if routed is not None and routed.reveal:
            versions["rollout"] = routed.rollout_id
            versions["arm"] = routed.arm
        elif routed is not None:
            # the arms stay indistinguishable to callers: no version, prompt or adapter
            versions = {"chain": served.name, "rollout": routed.rollout_id}
        return JSONResponse({"request_id": rid, "answer": answer.get("answer", ""),
                             "sources": answer.get("sources", []), "versions": versions},
                            headers={"X-Request-Id": rid, **session})

    return [Route("/v1/chains/{name}/invoke", invoke, methods=["POST"])]
