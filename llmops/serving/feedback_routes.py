"""``POST /v1/feedback``: a rating, score, correction or comment on an answered request.

Feedback is taken only from the client that made the request (its key; its address on a
gateway without keys; a widget key's session: ``llmops.serving.sessions``), or from an admin
key.

The request id is looked up off the event loop, a few lookups at a time, so that
a burst of feedback for unknown ids never stalls the streams the gateway relays.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmops.feedback.records import feedback_record_problem
from llmops.serving.auth import widget_only
from llmops.serving.errors import HTTPError
from llmops.serving.request_index import issued_at, owner_of
from llmops.serving.schema import FeedbackRequest
from llmops.serving.sessions import SESSION_HEADER
from llmops.serving.state import GatewayState
from llmops.serving.wal import utcnow

__all__ = ["feedback_routes"]

_KIND = {1: "thumbs_up", -1: "thumbs_down"}
_CLOCK_SKEW_S = 2.0  # how far ahead another replica's clock may be


def _validate(payload: dict[str, Any]) -> FeedbackRequest:
    """The feedback request, or a 400 naming the first thing wrong with it."""
    try:
        return FeedbackRequest.model_validate(payload)
    except ValidationError as exc:
        if any(err["loc"][:1] == ("request_id",) for err in exc.errors()):
            raise HTTPError(400, "'request_id' must be a request's id (a string)") from None
        raise HTTPError(400, feedback_record_problem(exc)) from None


def feedback_routes(gw: GatewayState, concurrent_lookups: int = 4) -> list[Route]:
    lookups = asyncio.Semaphore(concurrent_lookups)

    async def lookup(request_id: str, fresh: bool = False) -> str | None:
        found = gw.requests.owner_in_memory(request_id)
        if found is not None:
            return found
        async with lookups:
            return await run_in_threadpool(gw.requests.owner, request_id, fresh)

    async def owner(request_id: str) -> str | None:
        found = await lookup(request_id)
        issued = issued_at(request_id)
        if found is not None or issued is None or issued > time.time() + _CLOCK_SKEW_S:
            return found  # not an id of ours (a made-up or foreign one): no wait
        # Answered a moment ago by another replica, whose log has not reached the table yet:
        # wait for it, until feedback_wait_s after the request was issued.
        deadline = min(issued, time.time()) + gw.cfg.feedback_wait_s
        while found is None and time.time() < deadline:
            await asyncio.sleep(min(0.25, max(0.0, deadline - time.time())))
            found = await lookup(request_id, fresh=True)
        return found

    async def feedback(request: Request) -> Response:
        rid = gw.new_request_id()
        key, slot = None, False
        try:
            # the key's limits first: a flood of unknown ids is refused before any lookup
            key, slot = gw.admit(request, ("feedback", "widget"), "/v1/feedback")
            payload, _ = await gw.read_json(request)
            record = _validate(payload)
            target, rating, score = record.request_id, record.rating, record.score
            made_by = await owner(target)
            if made_by is None:
                raise HTTPError(404, f"request '{target}' is unknown", "request_not_found")
            caller = key.name if key else (request.client.host if request.client else "")
            if widget_only(key):  # a page's visitor: the answers of its own session only
                sid = gw.sessions.verify(request.headers.get(SESSION_HEADER))
                caller = owner_of(caller, f"session:{sid}") if sid else ""
            if made_by != caller and not (key is not None and "admin" in key.scopes):
                # one's own answers only: no key can rate (or steer a rollout with) another's
                raise HTTPError(403, f"feedback on request '{target}' is accepted only from the "
                                     "key that made it", "permission_error")
        except HTTPError as err:
            return err.response(rid)
        finally:
            gw.release(key, slot)
        feedback_id = uuid.uuid4().hex
        gw.wal.append("feedback", {
            "feedback_id": feedback_id, "request_id": target, "ts": utcnow(), "rating": rating,
            "score": score, "correction": gw.redact(record.correction),
            "comment": gw.redact(record.comment),
            "source": record.source or "api", "user": record.user or (key.name if key else None),
        })
        gw.metrics.feedback.labels(kind=_KIND.get(rating, "score" if score else "text")).inc()
        return JSONResponse({"feedback_id": feedback_id, "request_id": target},
                            headers={"X-Request-Id": rid})

    return [Route("/v1/feedback", feedback, methods=["POST"])]
