from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from llmops.errors import PromptFileError, PromptNotFoundError, PromptVariableError
from llmops.lineage import git_commit
from llmops.prompts import (
    diff_versions,
    get_version,
    list_prompts,
    load,
    set_alias,
    sync_prompts,
)
from llmops.stores import connect


def edit_qa(project: Path, old: str, new: str) -> None:
    path = project / "prompts" / "qa.yaml"
    path.write_text(path.read_text().replace(old, new))


def test_sync_registers_then_is_a_noop(settings) -> None:
    first = sync_prompts(settings)
    assert sorted(first.registered) == [("qa", 1), ("qa_closed_book", 1), ("summarize", 1)]
    assert first.unchanged == []
    second = sync_prompts(settings)
    assert second.registered == []
    assert sorted(second.unchanged) == [("qa", 1), ("qa_closed_book", 1), ("summarize", 1)]
    assert len(MlflowClient().search_prompt_versions("qa")) == 1


def test_sync_tags_file_hash_and_commit(settings) -> None:
    sync_prompts(settings)
    version = get_version("qa/1", settings)
    tags = version.tags
    assert tags["llmops.source_file"] == "prompts/qa.yaml"
    assert len(tags["llmops.content_hash"]) == 64
    assert tags["llmops.git_commit"] == git_commit(settings.root)
    assert len(tags["llmops.git_commit"]) == 40
    assert tags["llmops.git_dirty"] == "false"
    assert tags["owner"] == "docs-assistant"
    assert version.model_config == {"temperature": 0.0, "max_tokens": 48, "stop": ["\n\n"]}


def test_changed_template_becomes_a_new_version(settings, project: Path) -> None:
    sync_prompts(settings)
    edit_qa(project, "one short sentence", "one or two sentences")
    report = sync_prompts(settings)
    assert report.registered == [("qa", 2)]
    assert sorted(report.unchanged) == [("qa_closed_book", 1), ("summarize", 1)]
    assert "one or two sentences" in get_version("qa", settings).template[0]["content"]
    # changing only the default model parameters is a change too
    edit_qa(project, "max_tokens: 48", "max_tokens: 32")
    assert sync_prompts(settings).registered == [("qa", 3)]


def test_one_broken_file_registers_nothing(settings, project: Path) -> None:
    (project / "prompts" / "zzz.yaml").write_text("variables: []\ntemplate: 'Hi {{x}}'\n")
    with pytest.raises(PromptVariableError, match=r"zzz.yaml.*\{\{x\}\}"):
        sync_prompts(settings)
    connect(settings)
    assert MlflowClient().get_prompt("qa") is None


def test_missing_prompt_folder(settings, project: Path) -> None:
    with pytest.raises(PromptFileError, match="does not exist"):
        sync_prompts(settings, project / "nope")


def test_alias_show_and_load(settings, project: Path) -> None:
    sync_prompts(settings)
    edit_qa(project, "Question:", "Q:")
    sync_prompts(settings)
    set_alias("qa", "production", 1, settings)
    assert int(get_version("qa@production", settings).version) == 1
    assert int(get_version("qa", settings).version) == 2
    lc = load("qa@production", settings)
    assert lc.format_messages(question="why?", context="c")[-1].content == "Question: why?"
    assert load("qa/2", settings).format_messages(question="why?", context="c")[-1].content == "Q: why?"
    assert lc.format_messages(question="why?", context="c")[0].content.endswith("excerpts.\n\nc\n")
    infos = {i.name: i for i in list_prompts(settings)}
    assert infos["qa"].latest_version == 2
    assert infos["qa"].aliases == {"production": 1}
    set_alias("qa", "production", 2, settings)
    assert int(get_version("qa@production", settings).version) == 2


def test_diff_is_unified(settings, project: Path) -> None:
    sync_prompts(settings)
    edit_qa(project, "Question:", "Q:")
    sync_prompts(settings)
    text = diff_versions("qa", 1, 2, settings)
    assert text.startswith("--- qa/1\n+++ qa/2\n")
    assert "-Question: {{question}}" in text
    assert "+Q: {{question}}" in text
    assert diff_versions("qa", 2, 2, settings) == ""


@pytest.mark.parametrize("ref", ["nope", "qa/9", "qa@nowhere"])
def test_unknown_references(settings, ref: str) -> None:
    sync_prompts(settings)
    with pytest.raises(PromptNotFoundError, match="does not exist"):
        get_version(ref, settings)


def test_alias_to_a_missing_version_changes_nothing(settings) -> None:
    sync_prompts(settings)
    with pytest.raises(PromptNotFoundError, match="qa/7"):
        set_alias("qa", "production", 7, settings)
    with pytest.raises(PromptNotFoundError):
        get_version("qa@production", settings)
