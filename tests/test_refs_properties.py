"""Property-based tests of reference parsing: any string either parses to a ``Ref`` that
round-trips (through its text and its URI) or raises ``BadReferenceError``."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmops.errors import BadReferenceError
from llmops.registry.refs import Ref, parse_ref

NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,12}"
ALIAS = r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,8}"
SCHEMES = ["models", "prompts", "chains"]

valid_text = st.one_of(
    st.from_regex(rf"{NAME}", fullmatch=True),
    st.from_regex(rf"{NAME}@{ALIAS}", fullmatch=True),
    st.from_regex(rf"{NAME}/[0-9]{{1,6}}", fullmatch=True),
)
reference_ish = st.lists(st.one_of(
    st.sampled_from(["@", "/", ":", ":/", "models:/", "prompts:/", " ", "\n", "latest", "v1",
                     "V2", "-", ".", "_", "0", "9", "é", "\x00"]),
    st.text(alphabet="abcXYZ019_.-", max_size=4)), max_size=8).map("".join)
anything = st.one_of(st.text(max_size=40), reference_ish, valid_text)


def _round_trips(ref: Ref, scheme: str) -> None:
    assert (ref.alias is None) or (ref.version is None)
    assert parse_ref(str(ref)) == ref
    assert parse_ref(ref.uri(scheme), scheme) == ref
    assert parse_ref(f"  {ref}\n") == ref


@settings(max_examples=100, database=None)
@given(text=anything, scheme=st.sampled_from([None, *SCHEMES]))
def test_any_string_parses_and_round_trips_or_is_a_bad_reference(text: str,
                                                                   scheme: str | None) -> None:
    try:
        ref = parse_ref(text, scheme)
    except BadReferenceError as exc:
        assert isinstance(exc, ValueError)  # documented: a BadReferenceError is a ValueError
        assert str(exc)
        return
    _round_trips(ref, scheme or "models")


@settings(max_examples=100, database=None)
@given(text=valid_text, scheme=st.sampled_from(SCHEMES))
def test_every_reference_in_the_grammar_parses(text: str, scheme: str) -> None:
    alias = text.partition("@")[2]
    reserved = alias.lower() == "latest" or (alias[:1] in "vV" and alias[1:].isdigit()
                                            and alias[1:] != "")
    try:
        ref = parse_ref(text)
    except BadReferenceError:
        assert reserved, text
        return
    assert not reserved
    assert str(ref) == (text if "/" not in text else
                        f"{text.partition('/')[0]}/{int(text.partition('/')[2])}")
    _round_trips(ref, scheme)
