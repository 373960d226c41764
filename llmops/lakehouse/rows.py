"""Rows of the lakehouse tables, built in one place: an ``inference_log`` row, and the
name and version columns a reference fills.

Cheap on purpose (a dict and a set check, no validation library): the gateway builds one
row per request on its hot path.
"""

from __future__ import annotations

from typing import Any

from llmops.errors import BadReferenceError, LlmopsError
from llmops.lakehouse.tables import TABLES
from llmops.registry import parse_ref

__all__ = ["inference_row", "name_and_version"]

_INFERENCE_COLUMNS = frozenset(TABLES["inference_log"])


def name_and_version(ref: str | None) -> tuple[str | None, str | None]:
    """``qa/1`` as (``qa``, ``1``) (read by :func:`llmops.registry.parse_ref`); anything else,
    ``qa@production`` included, as (ref, None), so a log row keeps what it was given."""
    if not ref:
        return None, None
    try:
        parsed = parse_ref(ref)
    except BadReferenceError:
        return ref, None
    return (ref, None) if parsed.version is None else (parsed.name, str(parsed.version))


def inference_row(request_id: str, endpoint: str, *, prompt_ref: str | None = None,
                  **columns: Any) -> dict[str, Any]:
    """One ``inference_log`` row; the columns not given are null when it is written.

    ``prompt_ref`` (the prompt's ``NAME/VERSION``) fills ``prompt`` and ``prompt_version``.
    Raises ``LlmopsError`` naming a column the table does not have, where the row is built
    rather than where it is written.
    """
    row = {"request_id": request_id, "endpoint": endpoint, **columns}
    if prompt_ref is not None:
        row["prompt"], row["prompt_version"] = name_and_version(prompt_ref)
    unknown = row.keys() - _INFERENCE_COLUMNS
    if unknown:
        raise LlmopsError(f"inference_log: unknown column(s) {', '.join(sorted(unknown))}")
    return row
