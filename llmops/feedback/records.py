"""The rules every piece of feedback follows, wherever it comes from (gateway, notebook)."""

from __future__ import annotations

from typing import Any

__all__ = ["feedback_problem"]


def feedback_problem(rating: Any, score: Any, correction: Any = None, comment: Any = None,
                     **text_fields: Any) -> str | None:
    """What is wrong with this feedback, in words for the user; None when it is valid.

    ``rating`` is a thumbs up (1) or down (-1), ``score`` an integer from 1 to 5; at
    least one of them, a correction or a comment must be given.
    """
    if rating is not None and (isinstance(rating, bool) or not isinstance(rating, int)
                               or rating not in (-1, 1)):  # 1.0 too: the column is an integer
        return "the rating must be -1 (thumbs down) or 1 (thumbs up)"
    if score is not None and (isinstance(score, bool) or not isinstance(score, int)
                              or not 1 <= score <= 5):
        return "the score must be an integer from 1 to 5"
    for name, text in (("correction", correction), ("comment", comment), *text_fields.items()):
        if text is not None and not isinstance(text, str):
            return f"the {name} must be a string"
    if rating is None and score is None and not ((correction or "").strip()
                                                 or (comment or "").strip()):
        return "give a thumbs up or down, a score, a correction or a comment"
    return None
