from __future__ import annotations

import pytest

from llmops.errors import BadReferenceError
from llmops.registry import Ref, parse_ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("qa", Ref("qa")),
        ("qa@production", Ref("qa", alias="production")),
        ("docs-qa/12", Ref("docs-qa", version=12)),
        ("prompts:/qa/2", Ref("qa", version=2)),
    ],
)
def test_parse(text: str, expected: Ref) -> None:
    assert parse_ref(text, "prompts") == expected
    assert str(expected) in text


@pytest.mark.parametrize("text", ["", "qa@", "qa/x", "qa@a@b", "/2", "qa/1/2", "a b"])
def test_bad_references_are_rejected(text: str) -> None:
    with pytest.raises(BadReferenceError, match="NAME, NAME@ALIAS or NAME/VERSION"):
        parse_ref(text)


def test_uri() -> None:
    assert Ref("qa", alias="production").uri("prompts") == "prompts:/qa@production"
