"""What one request and one key may ask of the engine.

Request caps are checked before anything goes upstream (400 naming the cap);
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

from llmops.serving.auth import ApiKey
from llmops.serving.config import GatewayConfig
from llmops.serving.errors import HTTPError

__all__ = ["KeyLimiter", "check_generation", "with_default_max_tokens"]


def _positive_int(payload: dict[str, Any], name: str, cap: int, low: int = 1) -> None:
    value = payload.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise HTTPError(400, f"'{name}' must be an integer of at least {low}")
    if value > cap:
        raise HTTPError(400, f"'{name}' is over this endpoint's cap of {cap}")


def _text_length(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):  # content parts
        return sum(len(p.get("text") or "") if isinstance(p, dict) else len(str(p))
                   for p in content)
    return 0 if content is None else len(str(content))


def check_generation(payload: dict[str, Any], kind: str, cfg: GatewayConfig) -> None:
    """400 for a malformed request or one over a cap (``kind``: ``chat`` or ``text``)."""
    if not isinstance(payload.get("model"), str) or not payload["model"]:
        raise HTTPError(400, "'model' must be a non-empty string")
    unit = "characters"
    if kind == "chat":
        msgs = payload.get("messages")
        if not isinstance(msgs, list) or not msgs or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) for m in msgs
        ):
            raise HTTPError(400, "'messages' must be a non-empty list of {role, content}")
        length = sum(_text_length(m.get("content")) for m in msgs)
    else:
        prompt = payload.get("prompt")
        if not isinstance(prompt, (str, list)) or not prompt:
            raise HTTPError(400, "'prompt' must be a string or a list")
        if isinstance(prompt, str):
            count, length = 1, len(prompt)
        elif all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
            count, length, unit = 1, len(prompt), "tokens"  # one prompt given as token ids
        elif all(isinstance(p, str) for p in prompt):
            count, length = len(prompt), max(len(p) for p in prompt)
        else:
            raise HTTPError(400, "'prompt' must be a string, a list of strings or a list "
                                 "of token ids")
        if count > cfg.max_prompts:
            raise HTTPError(400, f"'prompt' holds {count} prompts; this endpoint's cap "
                                 f"is {cfg.max_prompts}")
    if length > cfg.max_prompt_chars:
        raise HTTPError(400, f"the prompt is {length} {unit}; this endpoint's cap is "
                             f"{cfg.max_prompt_chars}")
    for name in ("max_tokens", "max_completion_tokens"):
        _positive_int(payload, name, cfg.max_tokens_cap)
    _positive_int(payload, "n", cfg.max_n)
    _positive_int(payload, "best_of", cfg.max_n)
    _positive_int(payload, "top_logprobs", cfg.max_logprobs, low=0)
    logprobs = payload.get("logprobs")
    if kind == "chat":
        if logprobs is not None and not isinstance(logprobs, bool):
            raise HTTPError(400, "'logprobs' must be true or false")
    else:
        _positive_int(payload, "logprobs", cfg.max_logprobs, low=0)
    if "stream" in payload and not isinstance(payload["stream"], bool):
        raise HTTPError(400, "'stream' must be true or false")
    for name in ("temperature", "top_p"):
        value = payload.get(name)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise HTTPError(400, f"'{name}' must be a number")


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
