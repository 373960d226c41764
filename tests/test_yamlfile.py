"""One reader for every YAML settings file: the same one-line errors everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from llmops.errors import ConfigError, PromptFileError
from llmops.yamlfile import load_yaml_model, read_yaml_mapping


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: int = Field(1, ge=1)
    name: str = "x"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "limits.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_and_validates(tmp_path: Path) -> None:
    assert load_yaml_model(write(tmp_path, "rate: 3\n"), Limits, what="limits").rate == 3
    assert load_yaml_model(write(tmp_path, ""), Limits, what="limits") == Limits()


@pytest.mark.parametrize(("text", "message"), [
    ("rate: [1\n", r"limits\.yaml: line \d+ is not valid YAML: fix its syntax$"),
    ("- a list\n", r"limits\.yaml: expected a mapping .* not list\)$"),
    ("rate: 0\n", r"limits\.yaml: field 'rate': Input should be greater than or equal to 1$"),
    ("colour: red\n", r"limits\.yaml: field 'colour': Extra inputs are not permitted$"),
    ("rate: !!float secret\n", r"limits\.yaml is not valid YAML: a value cannot be read"),
])
def test_errors_name_the_file_and_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_yaml_model(write(tmp_path, text), Limits, what="limits")
    assert "\n" not in str(err.value) and "secret" not in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read limits .*nope\.yaml: No such file"):
        load_yaml_model(tmp_path / "nope.yaml", Limits, what="limits")
    assert load_yaml_model(tmp_path / "nope.yaml", Limits, what="limits", missing_ok=True) == Limits()
    assert read_yaml_mapping(tmp_path / "nope.yaml", what="limits", missing_ok=True) == {}


def test_error_class_and_prepare(tmp_path: Path) -> None:
    path = write(tmp_path, "rate: 2\n")
    with pytest.raises(PromptFileError, match="field 'rate'"):
        load_yaml_model(path, Limits, what="limits", error=PromptFileError,
                        prepare=lambda raw: {**raw, "rate": -1})
    got = load_yaml_model(path, Limits, what="limits", prepare=lambda raw: {**raw, "name": "y"})
    assert (got.rate, got.name) == (2, "y")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe rate")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        read_yaml_mapping(tmp_path / "bin.yaml", what="limits")
