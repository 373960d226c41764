"""What a request to the gateway may hold, stated once as pydantic models.

``limits.py`` and the feedback route validate requests with these models and ``openapi.py``
publishes their JSON schemas (``model_json_schema()``) as ``/openapi.json``'s components, so a
cap stated here is the one the gateway enforces and the one its schema documents. The caps
come from the endpoint's ``GatewayConfig``: ``generation_models(cfg)`` builds (once per set of
caps) the models of ``/v1/chat/completions`` and ``/v1/completions``. Those routes forward the
client's bytes to the engine, so the models are an allow-list: a field they do not name is
refused (400), not passed on. Fields that make the engine do unbounded or unplanned work
(``logit_bias``, ``prompt_logprobs``, grammars and ``response_format``, ``tools``,
``priority``, ``vllm_xargs``, ...) are refused unless the endpoint's ``extra_fields`` names
them.

Validation is strict, as JSON is: ``"8"`` is not a number, ``true`` not an integer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, field_validator
from pydantic_core import PydanticCustomError

from llmops.config import CacheSalt
from llmops.feedback.records import FeedbackRecord
from llmops.serving.config import GatewayConfig

__all__ = ["SCOPES", "ContentPart", "FeedbackRequest", "GenerationModels", "KeyEntry", "KeysFile",
           "Message", "ROLES", "StreamOptions", "generation_models", "openapi_schemas", "parse_scopes"]

# invoke: the OpenAI routes and chains; feedback: rate one's own answers; metrics: /metrics
# (it names keys, chains and adapters); widget: chains at their default alias and feedback on
# its own session's answers only (a key a public page may hold); admin: adapters, any alias,
# and all of the others
SCOPES = frozenset({"invoke", "feedback", "metrics", "widget", "admin"})


class ContentPart(BaseModel):
    """One part of a message's content (OpenAI's content parts): text only; it counts to the cap."""

    model_config = ConfigDict(strict=True, extra="forbid")

    type: Literal["text"] = "text"
    text: str


ROLES = ("system", "developer", "user", "assistant")


class Message(BaseModel):
    """A chat message: its role, content and an optional participant name; nothing else."""

    model_config = ConfigDict(strict=True, extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(None, max_length=64)


class StreamOptions(BaseModel):
    """``stream_options``: usage in the stream (OpenAI's, and vLLM's per-chunk usage)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    include_usage: bool | None = None
    continuous_usage_stats: bool | None = None


class FeedbackRequest(FeedbackRecord):
    """``POST /v1/feedback``: a piece of feedback on an answered request."""

    request_id: str = Field(min_length=1, max_length=128,
                            description="The X-Request-Id of the answer the feedback is about")


def text_length(content: Any) -> int:
    """The characters of a message's content: a string, or content parts (as sent or validated)."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        texts = (part.get("text") if isinstance(part, dict) else getattr(part, "text", None)
                 for part in content)
        return sum(len(text) for text in texts if isinstance(text, str))
    return 0


def _all_text_at_most(cap: int, max_parts: int) -> AfterValidator:
    def check(messages: list[Message]) -> list[Message]:
        # empty parts cost nothing in characters but each is work: they count as messages do
        parts = sum(len(m.content) if isinstance(m.content, list) else 1 for m in messages)
        if parts > max_parts:
            raise PydanticCustomError("too_many_parts", "the messages hold {parts} content "
                                      "parts; this endpoint's cap is {cap}",
                                      {"parts": parts, "cap": max_parts})
        length = sum(text_length(m.content) for m in messages)
        if length > cap:
            raise PydanticCustomError("prompt_too_long", "the prompt is {length} characters; "
                                      "this endpoint's cap is {cap}", {"length": length, "cap": cap})
        return messages

    return AfterValidator(check)


def parse_scopes(scopes: list[str] | str) -> frozenset[str]:
    """Scopes from a list or ``"invoke,feedback"``; ValueError unless some, all known."""
    items = scopes.split(",") if isinstance(scopes, str) else scopes
    found = frozenset(s.strip() for s in items if s.strip())
    unknown = found - SCOPES
    if unknown or not found:
        raise ValueError(f"scopes must be some of {', '.join(sorted(SCOPES))}; got "
                         f"{', '.join(sorted(unknown)) or '(none)'}")
    return found


class KeyEntry(BaseModel):
    """One key of a keys file (``auth.keys_file``); a limit it leaves out is the auth default."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    key: str = Field(min_length=1, description="The key (held only as its SHA-256 digest).")
    scopes: frozenset[str] = Field(
        description=f"Some of {', '.join(sorted(SCOPES))}: a list or 'invoke,feedback'; "
                    "admin implies the others.")
    name: str | None = Field(None, description="What logs and rows record (default: file-N).")
    max_concurrent: int | None = Field(
        None, gt=0, strict=True, description="Concurrent requests (null: no limit).")
    requests_per_minute: float | None = Field(
        None, gt=0, strict=True, description="Requests per minute, a token bucket (null: no limit).")

    @field_validator("scopes", mode="before")
    @classmethod
    def _scopes(cls, value: Any) -> Any:
        return parse_scopes(value) if isinstance(value, (str, list)) else value


class KeysFile(BaseModel):
    """A keys file: ``{keys: [{key, scopes, name?, max_concurrent?, requests_per_minute?}]}``."""

    model_config = ConfigDict(extra="forbid")

    keys: list[KeyEntry] = Field(default_factory=list, description="The keys the gateway accepts.")


@dataclass(frozen=True)
class GenerationModels:
    """The request models of the two OpenAI routes, for one set of caps."""

    chat: type[BaseModel]
    completion: type[BaseModel]


_GENERATION = ConfigDict(strict=True, extra="forbid")


def _capped(low: int, high: int) -> Any:
    return (int | None, Field(None, ge=low, le=high))


def _generation_fields(max_tokens_cap: int, max_n: int, max_logprobs: int) -> dict[str, Any]:
    """The fields both OpenAI routes check after the prompt, in the order they are checked."""
    return {
        "max_tokens": _capped(1, max_tokens_cap),
        "max_completion_tokens": _capped(1, max_tokens_cap),
        "min_tokens": _capped(0, max_tokens_cap),
        "n": _capped(1, max_n),
        "best_of": _capped(1, max_n),
        "top_logprobs": _capped(0, max_logprobs),
    }


_STOP = Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]], Field(max_length=8)]


def _sampling_fields() -> dict[str, Any]:
    penalty = (float | None, Field(None, ge=-2.0, le=2.0))
    return {
        "stream": (bool, False),
        "stream_options": (StreamOptions | None, None),
        "temperature": (float | None, Field(None, ge=0.0, le=2.0)),
        "top_p": (float | None, Field(None, gt=0.0, le=1.0)),
        "top_k": (int | None, Field(None, ge=-1)),
        "min_p": (float | None, Field(None, ge=0.0, le=1.0)),
        "presence_penalty": penalty,
        "frequency_penalty": penalty,
        "repetition_penalty": (float | None, Field(None, gt=0.0, le=2.0)),
        "seed": (int | None, None),
        "stop": (Annotated[str, Field(min_length=1, max_length=256)] | _STOP | None, None),
        "ignore_eos": (bool | None, None),  # bounded by max_tokens, which is capped
        "user": (str | None, Field(None, description="The end user (logged)")),
        # the engine's prefix cache, salted: only requests with the same salt share cached
        # prompts (evaluations send one of their own; vLLM's own bounds)
        "cache_salt": (CacheSalt | None, None),
    }


def _extra_fields(names: tuple[str, ...], taken: set[str]) -> dict[str, Any]:
    """The endpoint's ``extra_fields``: forwarded as sent, unchecked."""
    return {name: (Any, Field(None, description="forwarded unchecked (extra_fields)"))
            for name in names if name not in taken}


_MODEL_FIELD = (str, Field(min_length=1,
                           description="The engine's served model name or a loaded adapter's"))


@lru_cache(maxsize=16)
def _build(max_tokens_cap: int, max_n: int, max_logprobs: int, max_prompts: int,
           max_prompt_chars: int, max_messages: int, extra: tuple[str, ...]) -> GenerationModels:
    text = Annotated[str, Field(max_length=max_prompt_chars)]
    message = create_model(
        "Message", __base__=Message,
        content=(Annotated[str, Field(max_length=max_prompt_chars)]
                 | Annotated[list[ContentPart], Field(max_length=max_messages)] | None, None))
    common = {**_generation_fields(max_tokens_cap, max_n, max_logprobs), **_sampling_fields()}
    chat_fields = {
        "model": _MODEL_FIELD,
        "messages": (Annotated[list[message],  # type: ignore[valid-type]
                               _all_text_at_most(max_prompt_chars, max_messages)],
                     Field(min_length=1, max_length=max_messages,
                           description=f"At most {max_messages} messages (and content parts "
                                       "in all), all their text together at most "
                                       f"{max_prompt_chars} characters")),
        **common,
        "logprobs": (bool | None, None),
    }
    chat = create_model(
        "ChatCompletionRequest", __config__=_GENERATION,
        __doc__="An OpenAI chat completion request: the fields the gateway forwards",
        **chat_fields, **_extra_fields(extra, set(chat_fields)),
    )
    prompt = (
        Annotated[str, Field(min_length=1, max_length=max_prompt_chars)]
        | Annotated[list[text], Field(min_length=1, max_length=max_prompts)]
        | Annotated[list[Annotated[int, Field(ge=0)]], Field(
            min_length=1, max_length=max_prompt_chars, description="one prompt as token ids")]
    )
    completion_fields = {
        "model": _MODEL_FIELD,
        "prompt": (prompt, ...),
        **common,
        "logprobs": _capped(0, max_logprobs),
    }
    completion = create_model(
        "CompletionRequest", __config__=_GENERATION,
        __doc__="An OpenAI completion request: the fields the gateway forwards",
        **completion_fields, **_extra_fields(extra, set(completion_fields)),
    )
    return GenerationModels(chat, completion)


def generation_models(cfg: GatewayConfig) -> GenerationModels:
    """The chat and completion request models with ``cfg``'s caps (built once per set of caps)."""
    return _build(cfg.max_tokens_cap, cfg.max_n, cfg.max_logprobs, cfg.max_prompts,
                  cfg.max_prompt_chars, cfg.max_messages, tuple(cfg.extra_fields))


def _openapi30(node: Any) -> Any:
    """A pydantic (JSON Schema 2020-12) schema as OpenAPI 3.0 writes it: ``nullable``, not null."""
    if isinstance(node, list):
        return [_openapi30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _openapi30(value) for key, value in node.items() if key != "title"}
    if "properties" in node:  # its keys are field names (one may be "title"), not keywords
        out["properties"] = {name: _openapi30(value)
                             for name, value in node["properties"].items()}
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        if len(rest) == 1:
            del out["anyOf"]
            out = {**rest[0], **out, "nullable": True}
        else:
            out["anyOf"] = [{**rest[0], "nullable": True}, *rest[1:]]
    if "const" in out:
        out["enum"] = [out.pop("const")]
    for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(out.get(flag), (int, float)) and not isinstance(out[flag], bool):
            out[bound], out[flag] = out[flag], True  # 3.0: a number and a flag
    return out


def openapi_schemas(cfg: GatewayConfig) -> dict[str, dict[str, Any]]:
    """The request bodies' schemas for ``/openapi.json``'s components, by component name."""
    models = generation_models(cfg)
    schemas: dict[str, dict[str, Any]] = {}
    for model in (models.chat, models.completion, FeedbackRequest):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            schemas[name] = _openapi30(sub)
        schemas[model.__name__] = _openapi30(schema)
    return schemas
