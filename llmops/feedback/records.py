"""The rules every piece of feedback follows, wherever it comes from (gateway, notebook).

``FeedbackRecord`` states them once: the gateway validates ``POST /v1/feedback`` with it and
publishes its JSON schema in ``/openapi.json``; the notebook widget checks with
``feedback_problem``, which validates through the same model.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

__all__ = ["CAPS", "FeedbackRecord", "feedback_problem", "feedback_record_problem"]

_TEXT_FIELDS = ("correction", "comment", "user", "source")
# The longest text each field keeps, in characters (a correction is an answer; the rest short)
CAPS = {"correction": 8000, "comment": 2000, "user": 256, "source": 64}
_NOTHING_SAID = "give a thumbs up or down, a score, a correction or a comment"


def _exact_int(value: Any) -> Any:
    """Refuse ``True`` and ``1.0`` before the literal check (which takes them for 1)."""
    if isinstance(value, bool) or (value is not None and not isinstance(value, int)):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


class FeedbackRecord(BaseModel):
    """A piece of human feedback: at least one of a rating, a score, a correction or a comment.

    Fields it does not name are ignored (a client may send more than the gateway records).
    """

    model_config = ConfigDict(
        strict=True, extra="ignore",
        json_schema_extra={
            "description": "At least one of rating, score, a non-blank correction or comment",
            "anyOf": [
                {"required": ["rating"], "properties": {"rating": {"type": "integer"}}},
                {"required": ["score"], "properties": {"score": {"type": "integer"}}},
                {"required": ["correction"],
                 "properties": {"correction": {"type": "string", "pattern": r"\S"}}},
                {"required": ["comment"],
                 "properties": {"comment": {"type": "string", "pattern": r"\S"}}},
            ],
        })

    rating: Annotated[Literal[-1, 1] | None, BeforeValidator(_exact_int)] = Field(
        None, description="A thumbs up (1) or down (-1)")
    score: int | None = Field(None, ge=1, le=5, description="A score from 1 to 5")
    correction: str | None = Field(None, max_length=CAPS["correction"],
                                   description="A better answer")
    comment: str | None = Field(None, max_length=CAPS["comment"],
                                description="Anything else the user says")
    user: str | None = Field(None, max_length=CAPS["user"], description="Who gave the feedback")
    source: str | None = Field(None, max_length=CAPS["source"],
                               description="Where the feedback came from (default: api)")

    @model_validator(mode="after")
    def _says_something(self) -> FeedbackRecord:
        if self.rating is None and self.score is None and not (
                (self.correction or "").strip() or (self.comment or "").strip()):
            raise PydanticCustomError("nothing_said", _NOTHING_SAID)
        return self


def feedback_record_problem(exc: ValidationError) -> str:
    """The first thing wrong with a feedback record, in words for the user."""
    err = exc.errors()[0]
    name = err["loc"][0] if err["loc"] else None
    if name == "rating":
        return "the rating must be -1 (thumbs down) or 1 (thumbs up)"
    if name == "score":
        return "the score must be an integer from 1 to 5"
    if name in _TEXT_FIELDS and err["type"] == "string_too_long":
        return f"the {name} is over its cap of {CAPS[str(name)]} characters"
    if name in _TEXT_FIELDS:
        return f"the {name} must be a string"
    if err["type"] == "nothing_said":
        return _NOTHING_SAID
    return f"'{name}': {err['msg']}" if name else err["msg"]


def feedback_problem(rating: Any, score: Any, correction: Any = None, comment: Any = None,
                     **text_fields: Any) -> str | None:
    """What is wrong with this feedback, in words for the user; None when it is valid.

    ``rating`` is a thumbs up (1) or down (-1), ``score`` an integer from 1 to 5; at
    least one of them, a correction or a comment must be given.
    """
    try:
        FeedbackRecord.model_validate({"rating": rating, "score": score, "correction": correction,
                                       "comment": comment, **text_fields})
    except ValidationError as exc:
        return feedback_record_problem(exc)
    return None
