"""Property-based tests of the prompt template reader: any file content, YAML-ish or not, gives
either a valid ``PromptTemplate`` (that renders and hashes) or a ``PromptError`` naming the file,
never another exception."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from llmops.errors import PromptError
from llmops.prompts.templates import PromptTemplate, read_prompt_file

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
scalar = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
          | st.text(max_size=20) | st.dates())
value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=3),
                     max_leaves=6)
placeholder_text = st.lists(
    st.one_of(st.text(max_size=12), names.map(lambda n: "{{" + n + "}}"),
              names.map(lambda n: "{{ " + n + " }}")), max_size=5).map("".join)
chat = st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool"]), "content": placeholder_text},
    optional={"extra": value}), max_size=3)
# mappings close to a prompt file (every field sometimes right, sometimes not)
document = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,8}", fullmatch=True), value),
    "description": st.text(max_size=20) | value,
    "tags": st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=2) | value,
    "variables": st.lists(names, max_size=3) | value,
    "template": placeholder_text | chat | value,
    "model_parameters": st.dictionaries(st.text(max_size=8), value, max_size=3) | value,
    "other": value,
})
yaml_like = st.one_of(
    document.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    value.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    st.text(max_size=200),
    st.lists(st.sampled_from(["variables: [q]", "template: '{{q}}'", "template: |",
                              "  {{ q }}", "- role: user", "  content: x", "&a [*a]", "{", ":",
                              "model_parameters: {t: 2020-02-30}", "a: !!float x", "\t",
                              "model_parameters: {d: 2021-01-01}", "name: a b", "---", "- x"]),
             max_size=6).map("\n".join),
)
counter = itertools.count()


def _check(template: PromptTemplate) -> None:
    values: dict[str, Any] = {v: f"<{v}>" for v in template.variables}
    rendered = template.format(**values)
    texts = [rendered] if isinstance(rendered, str) else [m["content"] for m in rendered]
    for text in texts:
        for name in template.variables:
            assert "{{" + name + "}}" not in text
    assert len(template.content_hash) == 64


@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=yaml_like)
@example(text="variables: [q]\ntemplate: '{{q}}'\nmodel_parameters: {t: 2020-02-30}\n")
@example(text="variables: []\ntemplate: hi\nmodel_parameters: {d: 2021-01-01}\n")
@example(text="variables: []\ntemplate: hi\nmodel_parameters: &a {x: [*a]}\n")
@example(text="a: !!float x")
@example(text="\ud800")
def test_any_file_is_a_template_or_a_prompt_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / f"p{next(counter)}.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        template = read_prompt_file(path)
    except PromptError as exc:
        assert str(path) in str(exc)
        return
    _check(template)
    assert template.source == str(path)
