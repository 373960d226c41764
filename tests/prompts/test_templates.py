from __future__ import annotations

from pathlib import Path

import pytest

from llmops.errors import PromptFileError, PromptVariableError
from llmops.prompts import PromptTemplate, read_prompt_dir, read_prompt_file, to_langchain


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_repository_prompts_are_valid() -> None:
    templates = read_prompt_dir(Path(__file__).resolve().parents[2] / "prompts")
    assert {t.name for t in templates} >= {"qa"}


def test_chat_template_renders_and_converts_to_langchain(tmp_path: Path) -> None:
    path = write(tmp_path, "greet.yaml", """
variables: [name]
template:
  - role: system
    content: "Use JSON like {\\"a\\": 1}."
  - role: user
    content: "Hi {{ name }}"
""")
    tpl = read_prompt_file(path)
    assert tpl.name == "greet"
    assert tpl.format(name="Ada") == [
        {"role": "system", "content": 'Use JSON like {"a": 1}.'},
        {"role": "user", "content": "Hi Ada"},
    ]
    lc = to_langchain(tpl)
    messages = lc.format_messages(name="Ada")
    assert [m.content for m in messages] == ['Use JSON like {"a": 1}.', "Hi Ada"]
    assert lc.input_variables == ["name"]


def test_text_template(tmp_path: Path) -> None:
    tpl = read_prompt_file(write(tmp_path, "t.yaml", "variables: [x]\ntemplate: 'x={{x}}'\n"))
    assert tpl.format(x=3) == "x=3"
    assert to_langchain(tpl).format(x=3) == "x=3"


@pytest.mark.parametrize(
    ("text", "error", "pattern"),
    [
        ("variables: [q]\ntemplate: [unclosed\n", PromptFileError, r"bad.yaml: line \d+ is not valid YAML"),
        ("variables: [q]\n", PromptFileError, "field 'template': Field required"),
        ("variables: [q]\ntemplate: '{{q}}'\ncolour: red\n", PromptFileError, "field 'colour'"),
        ("variables: [q]\ntemplate:\n  - role: robot\n    content: '{{q}}'\n", PromptFileError,
         "field 'template"),
        ("variables: [q]\ntemplate: 'Hello {{who}} {{q}}'\n", PromptVariableError,
         r"uses \{\{who\}\} but 'variables' does not declare it"),
        ("variables: [q, unused]\ntemplate: '{{q}}'\n", PromptVariableError, "never uses it"),
        ("just text\n", PromptFileError, "expected a mapping"),
    ],
)
def test_bad_template_files(tmp_path: Path, text: str, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        read_prompt_file(write(tmp_path, "bad.yaml", text))


def test_unknown_or_missing_variable_at_render() -> None:
    tpl = PromptTemplate.draft("Q: {{question}}")
    with pytest.raises(PromptVariableError, match="missing question"):
        tpl.format()
    with pytest.raises(PromptVariableError, match="unknown colour"):
        tpl.format(question="q", colour="red")


def test_duplicate_names_in_a_folder(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: qa\nvariables: []\ntemplate: hi\n")
    write(tmp_path, "b.yaml", "name: qa\nvariables: []\ntemplate: hello\n")
    with pytest.raises(PromptFileError, match="prompt name 'qa' is also used"):
        read_prompt_dir(tmp_path)


def test_content_hash_tracks_template_and_parameters() -> None:
    a = PromptTemplate.draft("Q: {{q}}", model_parameters={"temperature": 0})
    b = PromptTemplate.draft("Q: {{q}}", model_parameters={"temperature": 0})
    c = PromptTemplate.draft("Q: {{q}}", model_parameters={"temperature": 1})
    d = PromptTemplate.draft("Question: {{q}}", model_parameters={"temperature": 0})
    assert a.content_hash == b.content_hash
    assert len({a.content_hash, c.content_hash, d.content_hash}) == 3
