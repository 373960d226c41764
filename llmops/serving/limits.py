"""What one request and one key may ask of the engine.

Request caps (stated once, in ``schema.py``) are checked before anything goes upstream
(400 naming the cap);
a request without ``max_tokens`` gets the endpoint's default. Per-key limits
(concurrent requests, requests per minute as a token bucket) answer 429 with
``Retry-After``. Limits are held per gateway process.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from annotated_types import Ge
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from llmops.serving.auth import ApiKey
from llmops.serving.config import GatewayConfig
from llmops.serving.errors import HTTPError
from llmops.serving.schema import ROLES, generation_models, text_length

__all__ = ["KeyLimiter", "check_generation", "with_default_max_tokens"]


def _prompt_problem(prompt: Any, cfg: GatewayConfig) -> str:
    """What the schema found wrong with a completion's ``prompt``, in words naming the cap."""
    if not isinstance(prompt, (str, list)) or not prompt:
        return "'prompt' must be a string or a list"
    unit = "characters"
    if isinstance(prompt, str):
        count, length = 1, len(prompt)
    elif all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
        count, length, unit = 1, len(prompt), "tokens"  # one prompt given as token ids
    elif all(isinstance(p, str) for p in prompt):
        count, length = len(prompt), max(len(p) for p in prompt)
    else:
        count, length = 0, 0
    if count > cfg.max_prompts:
        return f"'prompt' holds {count} prompts; this endpoint's cap is {cfg.max_prompts}"
    if length > cfg.max_prompt_chars:
        return f"the prompt is {length} {unit}; this endpoint's cap is {cfg.max_prompt_chars}"
    return "'prompt' must be a string, a list of strings or a list of token ids"


def _problem(err: ErrorDetails, payload: dict[str, Any], kind: str, model: type[BaseModel],
             cfg: GatewayConfig) -> str:
    """The schema's first error as the gateway words it (the field and the cap it is over)."""
    loc = err["loc"]
    name = str(loc[0]) if loc else ""
    if err["type"] == "extra_forbidden":
        field = str(loc[-1])
        where = f"messages[{loc[1]}]: " if name == "messages" and len(loc) > 2 else ""
        return (f"{where}'{field}' is not a field this gateway forwards to the engine"
                + ("" if where else " (an endpoint's gateway.extra_fields can allow it)"))
    if name == "model":
        return "'model' must be a non-empty string"
    if name == "messages":
        if err["type"] in ("string_too_long", "prompt_too_long"):
            length = sum(text_length(m.get("content")) for m in payload["messages"]
                         if isinstance(m, dict))
            return f"the prompt is {length} characters; this endpoint's cap is {cfg.max_prompt_chars}"
        if err["type"] == "too_long" and len(loc) == 1:
            return (f"'messages' holds {len(payload['messages'])} messages; this endpoint's cap "
                    f"is {cfg.max_messages}")
        if err["type"] == "too_many_parts" or (err["type"] == "too_long" and len(loc) > 2
                                               and loc[2] == "content"):
            return (f"the messages hold more than {cfg.max_messages} content parts in all; "
                    f"this endpoint's cap is {cfg.max_messages}")
        if len(loc) > 2 and loc[2] == "role":
            return f"messages[{loc[1]}].role must be one of {', '.join(ROLES)}"
        if len(loc) > 2 and loc[2] == "content":
            return (f"messages[{loc[1]}].content must be a string or a list of text parts "
                    "({type: text, text})")
        return "'messages' must be a non-empty list of {role, content}"
    if name == "prompt":
        return _prompt_problem(payload["prompt"], cfg)
    if name == "stream" or (name == "logprobs" and kind == "chat"):
        return f"'{name}' must be true or false"
    if name in ("temperature", "top_p") and err["type"] in ("float_type", "float_parsing"):
        return f"'{name}' must be a number"
    if err["type"] == "less_than_equal":
        return f"'{name}' is over this endpoint's cap of {err['ctx']['le']}"
    low = next((m.ge for m in model.model_fields[name].metadata if isinstance(m, Ge)), None) \
        if name in model.model_fields else None
    if low is not None:
        return f"'{name}' must be an integer of at least {low}"
    return f"'{name}': {err['msg']}" if name else err["msg"]


def check_generation(payload: dict[str, Any], kind: str, cfg: GatewayConfig) -> None:
    """400 for a malformed request or one over a cap (``kind``: ``chat`` or ``text``).

    The request is checked against ``schema.generation_models(cfg)`` once, on entry.
    """
    models = generation_models(cfg)
    model = models.chat if kind == "chat" else models.completion
    try:
        model.model_validate(payload)
    except ValidationError as exc:
        errors = exc.errors()
        # of a union's members (a content string or a list of parts), the one the value was
        # meant as: not the member whose type it is not
        first = next((e for e in errors if e["loc"][:-1] == errors[0]["loc"][:-1]
                      and not e["type"].endswith("_type")), errors[0])
        raise HTTPError(400, _problem(first, payload, kind, model, cfg)) from None


def with_default_max_tokens(payload: dict[str, Any], raw: bytes, default: int) -> bytes:
    """The client's bytes, with ``"max_tokens": default`` added where it sets no output cap.

    The field is spliced in after the object's opening brace, so that every other
    byte the client sent goes upstream unchanged.
    """
    if payload.get("max_tokens") is not None or payload.get("max_completion_tokens") is not None:
        return raw
    body = raw.lstrip()
    if "max_tokens" in payload or "max_completion_tokens" in payload or not body.startswith(b"{"):
        # an explicit null: a second key would lose to it, so write the object anew
        import json

        return json.dumps({**payload, "max_tokens": default}).encode("utf-8")
    rest = body[1:]
    head = b'{"max_tokens":%d' % default
    return head + (rest if rest.lstrip().startswith(b"}") else b"," + rest)


@dataclass
class _State:
    active: int = 0
    tokens: float = 0.0
    at: float = field(default_factory=time.monotonic)


class KeyLimiter:
    """Concurrency and requests-per-minute limits per key; ``acquire`` then ``release``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, _State] = {}

    def acquire(self, key: ApiKey | None) -> bool:
        """Count one request for ``key``; raise a 429 ``HTTPError`` over a limit.

        Returns whether a concurrency slot was taken (then ``release`` it when done).
        """
        if key is None or (key.max_concurrent is None and key.requests_per_minute is None):
            return False
        now = time.monotonic()
        with self._lock:
            state = self._state.get(key.name)
            if state is None:
                state = self._state[key.name] = _State(
                    tokens=key.requests_per_minute or 0.0, at=now)
            if key.max_concurrent is not None and state.active >= key.max_concurrent:
                raise HTTPError(429, f"this key has {key.max_concurrent} requests in flight, "
                                     "its limit", "rate_limit_error", {"Retry-After": "1"})
            if key.requests_per_minute is not None:
                rate = key.requests_per_minute / 60.0
                state.tokens = min(key.requests_per_minute,
                                   state.tokens + (now - state.at) * rate)
                state.at = now
                if state.tokens < 1.0:
                    wait = max(1, math.ceil((1.0 - state.tokens) / rate))
                    raise HTTPError(429, f"this key's limit of {key.requests_per_minute:g} "
                                         "requests per minute is reached", "rate_limit_error",
                                    {"Retry-After": str(wait)})
                state.tokens -= 1.0
            if key.max_concurrent is None:
                return False
            state.active += 1
            return True

    def release(self, key: ApiKey | None) -> None:
        if key is None:
            return
        with self._lock:
            state = self._state.get(key.name)
            if state is not None and state.active > 0:
                state.active -= 1
