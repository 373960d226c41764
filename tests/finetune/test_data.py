"""Training rows: checks, the deterministic hold-out split, chat rendering, lineage."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.errors import FinetuneDataError
from llmops.finetune.data import as_chat, load_training_data, read_rows, split_rows
from tests.finetune.conftest import CORRECTIONS, write_jsonl

ROWS = [{"prompt": q, "completion": a} for q, a in CORRECTIONS]


@pytest.mark.parametrize("lines, message", [
    (["", "  "], "no training rows"),
    (['{"prompt": "q"', ], r":1: not valid JSON"),
    (['["q", "a"]'], "must be a JSON object"),
    (['{"prompt": "q", "completion": ""}'], "'completion' must be a non-empty string"),
    (['{"prompt": "q", "completion": "a"}', '{"question": "q"}'],
     r"lack the column\(s\) prompt, completion .*first at row 2"),
])
def test_bad_sft_rows(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FinetuneDataError, match=message):
        read_rows(path, "sft")


def test_kto_rows_need_a_boolean_label(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "k.jsonl", [{"prompt": "q", "completion": "a", "label": "yes"}])
    with pytest.raises(FinetuneDataError, match="'label' must be true or false"):
        read_rows(path, "kto")
    path = write_jsonl(tmp_path / "k.jsonl", [{"prompt": "q", "completion": "a", "label": 1}])
    assert read_rows(path, "kto")[0]["label"] is True


def test_split_is_deterministic_and_stable() -> None:
    train, held = split_rows(ROWS, 0.25, seed=0)
    assert (len(train), len(held)) == (9, 3)
    # the same rows on each side, in the same order, whatever order the file had: the
    # trainer's seeded shuffle sees the same list
    assert split_rows(list(reversed(ROWS)), 0.25, seed=0) == (train, held)
    assert train != [r for r in ROWS if r in train]  # rank order, not the file's
    assert split_rows(ROWS, 0.25, seed=1)[1] != held
    extra = {"prompt": "A new question?", "completion": "A new answer."}
    _, held_more = split_rows([*ROWS, extra], 0.25, seed=0)  # still 3 held out
    assert [r for r in held_more if r is not extra] == [r for r in held if r in held_more]
    assert len(set(map(str, held_more)) & set(map(str, held))) >= 2


def test_split_edges() -> None:
    assert split_rows(ROWS[:1], 0.5, seed=0) == (ROWS[:1], [])
    unsplit, none = split_rows(ROWS, 0.0, seed=0)
    assert none == [] and unsplit == split_rows(list(reversed(ROWS)), 0.0, seed=0)[0]
    assert sorted(map(str, unsplit)) == sorted(map(str, ROWS))
    assert len(split_rows(ROWS[:2], 0.01, seed=0)[1]) == 1  # at least one when there are two
    assert len(split_rows(ROWS[:2], 0.99, seed=0)[0]) == 1  # never all of them
    kto = [{**r, "label": i % 2 == 0} for i, r in enumerate(ROWS)]
    assert all(r["label"] for r in split_rows(kto, 0.5, seed=0, method="kto")[1])


def test_chat_rows_render_as_vllm_serves_them(settings) -> None:
    """Training text = the chat endpoint's prompt for [{"role": "user", ...}] + the completion."""
    from transformers import AutoTokenizer

    from llmops.models import ensure_tiny_model

    tok = AutoTokenizer.from_pretrained(ensure_tiny_model(settings.models_dir, settings.root / "docs"))
    row = as_chat(ROWS[:1], "sft")[0]
    served = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
    assert full.startswith(served) and full[len(served):].startswith(ROWS[0]["completion"])
    assert as_chat([{**ROWS[0], "label": False}], "kto")[0]["label"] is False


def test_lineage_and_file_hash(settings, sft_file: Path) -> None:
    data = load_training_data("sft", sft_file, settings, settings.root, 0.25, 0)
    lineage = data.lineage()
    assert lineage["rows"] == len(CORRECTIONS) and lineage["heldout_rows"] == 3
    assert lineage["models"] == ["base"] and lineage["adapters"] == []
    assert len(data.lineage_rows()) == len(CORRECTIONS)
    assert {r["split"] for r in data.lineage_rows()} == {"train", "heldout"}
    with pytest.raises(FinetuneDataError, match="does not exist"):
        load_training_data("sft", "nope.jsonl", settings, settings.root, 0.25, 0)


def test_evaluation_rows_from_an_eval_set(settings, tmp_path: Path) -> None:
    from llmops.finetune.data import load_eval_rows

    file = tmp_path / "paraphrases.jsonl"
    file.write_text('{"question": "Which table logs requests?", "expected": "inference_log.", '
                    '"fact": "inference_log"}\n\n{"prompt": "p", "completion": "c"}\n')
    assert load_eval_rows(file, settings) == [
        {"prompt": "Which table logs requests?", "completion": "inference_log.", "label": True,
         "fact": "inference_log"},
        {"prompt": "p", "completion": "c", "label": True}]
    file.write_text('{"question": "q", "expected": "e"}\n{"question": "q"}\n')
    with pytest.raises(FinetuneDataError, match=r"paraphrases.jsonl:2: an evaluation row needs"):
        load_eval_rows(file, settings)
    with pytest.raises(FinetuneDataError, match="does not exist"):
        load_eval_rows(tmp_path / "nowhere.jsonl", settings)


SERVED = [{"role": "system", "content": "Answer from these excerpts.\n\n[a.md]\nAliases point."},
          {"role": "user", "content": "Question: What is an alias?"}]


def test_rows_with_served_messages_train_on_them(tmp_path: Path) -> None:
    from llmops.finetune.data import prompt_messages

    path = write_jsonl(tmp_path / "rows.jsonl", [
        {"prompt": "What is an alias?", "messages": SERVED, "completion": "A pointer."},
        {"prompt": "Where are prompts kept?", "completion": "In git."}])
    served, bare = as_chat(read_rows(path, "sft"), "sft")
    assert served["prompt"] == SERVED
    assert bare["prompt"] == [{"role": "user", "content": "Where are prompts kept?"}]
    assert prompt_messages({"prompt": "q", "messages": None}) == [{"role": "user", "content": "q"}]


@pytest.mark.parametrize("messages", [
    [], "Question: hi", [{"role": "user"}], [{"role": "user", "content": 3}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
])
def test_bad_served_messages(tmp_path: Path, messages) -> None:
    path = write_jsonl(tmp_path / "rows.jsonl",
                       [{"prompt": "q", "messages": messages, "completion": "a"}])
    with pytest.raises(FinetuneDataError, match="row 1: 'messages' must be"):
        read_rows(path, "sft")
