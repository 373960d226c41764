"""``GET /openapi.json``: the gateway's own routes as an OpenAPI 3.0 document.

The request bodies the gateway validates are the JSON schemas of ``schema.py``'s models,
built with the endpoint's ``GatewayConfig``, so the caps it states (``max_tokens`` at most
``max_tokens_cap``, ``n`` at most ``max_n``, ...) are the ones this gateway enforces. It
describes what the gateway checks itself; the OpenAI routes pass every other field through
to the engine unchanged (``additionalProperties``), and the engine may refuse what it does
not accept (400, in the same error shape).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmops.serving.config import GatewayConfig
from llmops.serving.schema import openapi_schemas

__all__ = ["build_openapi", "openapi_routes"]

_ERRORS = {
    400: "The request is malformed or over one of this endpoint's caps",
    401: "No API key, or an unknown one",
    403: "The API key lacks the scope this route needs",
    404: "The model, chain, request or adapter does not exist",
    408: "The body did not arrive within gateway.body_timeout_s",
    409: "This gateway serves no adapters",
    413: "The body is over max_body_bytes",
    415: "The body is not sent as application/json",
    429: "The key's limit (concurrent requests or requests per minute) is reached",
    502: "The engine refused the adapter",
    503: "The engine (or the chain) is unavailable",
}


def _error(status: int) -> dict[str, Any]:
    return {"description": _ERRORS[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text(description: str, media_type: str) -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def build_openapi(cfg: GatewayConfig) -> dict[str, Any]:
    """The OpenAPI 3.0 document of a gateway with settings ``cfg``."""
    invoke_errors = {str(s): _error(s) for s in (400, 401, 403, 404, 408, 413, 415, 429, 503)}
    # the request bodies the gateway validates, from its schema models: the routes' bodies
    # inline (a reader sees the caps where the route is), what they refer to in components
    schemas = openapi_schemas(cfg)
    chat = schemas.pop("ChatCompletionRequest")
    completion = schemas.pop("CompletionRequest")
    feedback = schemas.pop("FeedbackRequest")
    chain_request = {
        "type": "object", "required": ["question"], "additionalProperties": False,
        "properties": {
            "question": {"type": "string", "minLength": 1, "maxLength": cfg.max_question_chars,
                         "pattern": r"\S"},
            "alias": {"type": "string", "minLength": 1,
                      "description": f"Default: {cfg.default_chain_alias}"},
            "user": {"type": "string", "nullable": True},
        },
    }
    admin_load = {
        "type": "object", "required": ["name"], "additionalProperties": False,
        "properties": {"name": {"type": "string", "minLength": 1},
                       "alias": {"type": "string"},
                       "version": {"type": "integer", "minimum": 1}},
    }
    admin_unload = {
        "type": "object", "required": ["model"], "additionalProperties": False,
        "properties": {"model": {"type": "string",
                                 "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.\-]*-v[0-9]+$"}},
    }
    engine_body = {"type": "object", "description": "The engine's answer, relayed unchanged",
                   "required": ["choices"],
                   "properties": {"id": {"type": "string"}, "object": {"type": "string"},
                                  "model": {"type": "string"},
                                  "choices": {"type": "array", "items": {"type": "object"}},
                                  "usage": {"type": "object", "nullable": True}}}
    stream = {"type": "object", "description": "One server-sent event (stream: true): the "
                                               "engine's chunk as JSON in data, then [DONE]",
              "properties": {"data": {"type": "string"}, "event": {"type": "string"},
                             "id": {"type": "string"}}}
    generated = {"description": "The engine's completion (a stream of events when stream: true)",
                 "content": {"application/json": {"schema": engine_body},
                             "text/event-stream": {"schema": stream}}}
    public: list[dict[str, Any]] = []  # no key needed

    def post(summary: str, body: dict[str, Any], ok: dict[str, Any],
             errors: dict[str, Any]) -> dict[str, Any]:
        return {"post": {"summary": summary, "requestBody": _body(body),
                         "responses": {"200": ok, **errors}}}

    def get(summary: str, ok: dict[str, Any], errors: dict[str, Any] | None = None,
            security: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        op: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **(errors or {})}}
        if security is not None:
            op["security"] = security
        return {"get": op}

    paths: dict[str, Any] = {
        "/v1/chat/completions": post("A chat completion from the engine (logged)", chat,
                                     generated, invoke_errors),
        "/v1/completions": post("A text completion from the engine (logged)", completion,
                                generated, invoke_errors),
        "/v1/models": get("The engine's models and loaded adapters", _ok(
            "The engine's model list", {"type": "object", "required": ["data"], "properties": {
                "object": {"type": "string"}, "data": {"type": "array", "items": {
                    "type": "object", "properties": {"id": {"type": "string"}}}}}}),
            {str(s): _error(s) for s in (401, 403, 429, 503)}),
        "/v1/chains/{name}/invoke": {
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "minLength": 1}}],
            **post("A registered chain's answer, with the versions behind it", chain_request,
                   _ok("The answer", {
                       "type": "object", "required": ["request_id", "answer", "sources",
                                                      "versions"],
                       "properties": {"request_id": {"type": "string"},
                                      "answer": {"type": "string"},
                                      "sources": {"type": "array"},
                                      "versions": {"type": "object"}}}),
                   invoke_errors)},
        "/v1/feedback": post("Feedback on an answered request", feedback, _ok(
            "The feedback is logged", {
                "type": "object", "required": ["feedback_id", "request_id"],
                "properties": {"feedback_id": {"type": "string"},
                               "request_id": {"type": "string"}}}),
            {str(s): _error(s) for s in (400, 401, 403, 404, 408, 413, 415, 429)}),
        "/admin/adapters/load": post("Load a registered LoRA adapter into the engine", admin_load,
                                     _ok("The adapter is loaded", {
                                         "type": "object", "required": ["loaded"],
                                         "properties": {"loaded": {"type": "object"}}}),
                                     {str(s): _error(s)
                                      for s in (400, 401, 403, 404, 408, 409, 413, 415, 429,
                                                502, 503)}),
        "/admin/adapters/unload": post("Unload a loaded adapter", admin_unload, _ok(
            "The adapter is unloaded", {"type": "object", "required": ["unloaded"],
                                        "properties": {"unloaded": {"type": "string"}}}),
            {str(s): _error(s) for s in (400, 401, 403, 404, 408, 413, 415, 429, 502)}),
        "/v1/rollouts/{name}/analysis": {
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "minLength": 1}}],
            **get("The chain's latest rollout, for an Argo Rollouts or Flagger metric", _ok(
                "phase: successful (promoted), failed (rolled back, aborted, inconclusive), "
                "paused (awaiting approval) or running", {
                    "type": "object", "required": ["phase", "rollout_id", "status"],
                    "properties": {"phase": {"type": "string",
                                             "enum": ["running", "paused", "successful",
                                                      "failed"]},
                                   "rollout_id": {"type": "string"},
                                   "status": {"type": "string"}}}),
                {str(s): _error(s) for s in (401, 403, 404, 429)})},
        "/healthz": get("The process answers", _ok("Alive", {
            "type": "object", "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok"]}}}), security=public),
        "/readyz": get("The gateway can serve", _ok("Ready", {"$ref": "#/components/schemas/Ready"}),
                       {"503": {"description": "Not ready: the reason is named",
                                "content": {"application/json": {
                                    "schema": {"$ref": "#/components/schemas/Ready"}}}}},
                       security=public),
        "/metrics": get("Prometheus metrics (a key with the metrics scope)",
                        _text("Metrics", "text/plain"), {str(s): _error(s) for s in (401, 403)}),
        "/openapi.json": get("This document", _ok("OpenAPI 3.0", {"type": "object"}),
                             security=public),
        "/": get("The feedback page", _text("The page", "text/html"), security=public),
        "/widget.js": get("The feedback widget's script",
                          _text("The script", "text/javascript"), security=public),
        "/widget.css": get("The feedback widget's stylesheet", _text("The stylesheet", "text/css"),
                           security=public),
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "llmops gateway", "version": "1",
                 "description": "An OpenAI-compatible gateway that logs every request and "
                                "feedback. Errors: {\"error\": {\"message\", \"type\", \"code\"}}."},
        "paths": paths,
        "security": [{"bearer": []}, {"apiKey": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
            "schemas": {
                **schemas,
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": {"error": {
                        "type": "object", "required": ["message", "type", "code"],
                        "properties": {
                            "message": {"type": "string"}, "type": {"type": "string"},
                            "code": {"anyOf": [{"type": "integer", "nullable": True},
                                               {"type": "string"}]},
                        }}},
                },
                "Ready": {
                    "type": "object", "required": ["ready", "engine", "log"],
                    "properties": {"ready": {"type": "boolean"}, "engine": {"type": "string"},
                                   "log": {"type": "string"}},
                },
            },
        },
    }


def openapi_routes(cfg: GatewayConfig) -> list[Route]:
    """``GET /openapi.json`` (no key needed)."""
    document = build_openapi(cfg)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    return [Route("/openapi.json", openapi, methods=["GET"])]
