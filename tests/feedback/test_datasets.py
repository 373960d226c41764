from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from llmops.errors import LlmopsError
from llmops.feedback import build_dataset
from llmops.lakehouse import append_rows
from tests.conftest import run_cli

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def log_row(rid: str, question: str, answer: str, **kw) -> dict:
    return {"request_id": rid, "ts": T0, "env": "dev", "endpoint": "/v1/chains/docs-qa/invoke",
            "model": "base", "chain": "docs-qa", "chain_version": "2", "prompt": "qa",
            "prompt_version": "1", "request": json.dumps({"question": question}),
            "response": answer, "status": 200, "latency_ms": 12.0, **kw}


def fb(fid: str, rid: str, rating: int | None, minutes: int, correction: str | None = None,
       score: int | None = None) -> dict:
    return {"feedback_id": fid, "request_id": rid, "ts": T0 + timedelta(minutes=minutes),
            "rating": rating, "score": score, "correction": correction, "source": "api",
            "user": "u"}


@pytest.fixture
def logs(settings):
    lake = settings.lakehouse
    append_rows(lake, "inference_log", [
        log_row("r1", "How do I promote a chain?", "Use the CLI."),
        log_row("r2", "What is an alias?", "A pointer to a version."),
        log_row("r3", "Who wrote this? mail me at ada@example.com", "Nobody."),
        log_row("r4", "What is an index version?", "A hash.", chain="other", model="lora-v1",
                adapter="lora-v1"),
        log_row("r5", "What is an alias?", "A pointer to a version."),  # same pair as r2
        log_row("r6", "Broken?", "oops", status=503),
        {**log_row("r7", "", ""), "endpoint": "/v1/chat/completions", "chain": None,
         "request": json.dumps({"model": "base", "messages": [
             {"role": "system", "content": "Be brief."},
             {"role": "user", "content": "Call +1 415 555 0100 about llmops"}]}),
         "response": "Sure."},
    ])
    append_rows(lake, "feedback", [
        fb("f1", "r1", 1, 1),                                            # good, then ...
        fb("f2", "r1", -1, 5, correction="Run llmops chains promote."),  # ... the latest wins
        fb("f3", "r2", None, 2, score=5),                                # a good score
        fb("f4", "r3", -1, 3, correction="The llmops team; write to ada@example.com"),
        fb("f5", "r4", 1, 4),
        fb("f6", "r5", 1, 6),
        fb("f7", "r6", 1, 7),                                            # a failed request
        fb("f8", "r7", None, 8, score=3),                                # a neutral score
        fb("f9", "r7", -1, 9),
    ])
    return settings


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eval_dataset(logs, tmp_path: Path) -> None:
    report = build_dataset("eval", tmp_path / "eval.jsonl", logs)
    rows = read(tmp_path / "eval.jsonl")
    by_q = {r["question"]: r for r in rows}
    assert by_q["How do I promote a chain?"]["expected"] == "Run llmops chains promote."
    assert by_q["How do I promote a chain?"]["origin"] == "correction"
    assert by_q["What is an alias?"]["expected"] == "A pointer to a version."
    assert by_q["What is an index version?"]["origin"] == "rated_good"
    # r2 and r5 are the same example: one row; r6 failed; r7's latest rating is bad, no correction
    assert len(rows) == 4 and report.duplicates == 1
    first = by_q["How do I promote a chain?"]
    assert (first["request_id"], first["chain"], first["chain_version"], first["prompt_name"],
            first["prompt_version"], first["model"], first["adapter"]) == (
        "r1", "docs-qa", "2", "qa", "1", "base", None)


def test_redaction_runs_before_writing(logs, tmp_path: Path) -> None:
    build_dataset("sft", tmp_path / "sft.jsonl", logs)
    text = (tmp_path / "sft.jsonl").read_text()
    assert "ada@example.com" not in text and "[EMAIL]" in text
    build_dataset("kto", tmp_path / "kto.jsonl", logs)
    kto = (tmp_path / "kto.jsonl").read_text()
    assert "415 555 0100" not in kto and "[PHONE]" in kto
    build_dataset("sft", tmp_path / "raw.jsonl", logs, redact=None)
    assert "ada@example.com" in (tmp_path / "raw.jsonl").read_text()


def test_sft_and_kto(logs, tmp_path: Path) -> None:
    build_dataset("sft", tmp_path / "sft.jsonl", logs)
    sft = {(r["prompt"], r["completion"]) for r in read(tmp_path / "sft.jsonl")}
    assert ("How do I promote a chain?", "Run llmops chains promote.") in sft
    assert ("What is an alias?", "A pointer to a version.") in sft
    build_dataset("kto", tmp_path / "kto.jsonl", logs)
    kto = read(tmp_path / "kto.jsonl")
    labels = {(r["prompt"], r["completion"]): r["label"] for r in kto}
    assert labels[("How do I promote a chain?", "Use the CLI.")] is False
    assert labels[("How do I promote a chain?", "Run llmops chains promote.")] is True
    assert labels[("Call [PHONE] about llmops", "Sure.")] is False  # the chat's last user message
    assert labels[("What is an alias?", "A pointer to a version.")] is True


def test_filters(logs, tmp_path: Path) -> None:
    build_dataset("eval", tmp_path / "a.jsonl", logs, adapter="lora-v1")
    assert [r["request_id"] for r in read(tmp_path / "a.jsonl")] == ["r4"]
    build_dataset("eval", tmp_path / "c.jsonl", logs, chain="docs-qa",
                  since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=6))
    # r1's latest feedback in the window (minute 5) counts; r4 is another chain
    assert {r["request_id"] for r in read(tmp_path / "c.jsonl")} == {"r1", "r2", "r3"}
    with pytest.raises(LlmopsError, match="unknown dataset kind"):
        build_dataset("dpo", tmp_path / "x.jsonl", logs)  # type: ignore[arg-type]


def test_cli(logs, project: Path) -> None:
    out = run_cli("feedback", "dataset", "--kind", "eval", "--out", "data/eval.jsonl",
                  "--chain", "docs-qa", cwd=project)
    assert out.returncode == 0, out.stderr
    assert "wrote 3 eval rows" in out.stdout
    assert len(read(project / "data" / "eval.jsonl")) == 3
    bad = run_cli("feedback", "dataset", "--kind", "eval", "--out", "x", "--since", "yesterday",
                  cwd=project)
    assert bad.returncode == 2


SERVED = [{"role": "system", "content": "Answer from these excerpts.\n\n[a.md]\nAliases point."},
          {"role": "user", "content": "Question: What is an alias?"}]


def test_sft_and_kto_rows_train_on_the_served_messages(settings, tmp_path: Path) -> None:
    lake = settings.lakehouse
    append_rows(lake, "inference_log", [
        # a chain call as the gateway logs it now: the question and the messages served
        {**log_row("s1", "What is an alias?", "Dunno."),
         "request": json.dumps({"question": "What is an alias?", "messages": SERVED})},
        # a row logged before chains returned their messages: the bare question only
        log_row("s2", "Where are prompts kept?", "In git."),
        {**log_row("s3", "", ""), "endpoint": "/v1/chat/completions", "chain": None,
         "request": json.dumps({"model": "base", "messages": SERVED}), "response": "Sure."},
    ])
    append_rows(lake, "feedback", [
        fb("g1", "s1", -1, 1, correction="A pointer to one version."),
        fb("g2", "s2", 1, 2), fb("g3", "s3", 1, 3)])
    build_dataset("sft", tmp_path / "sft.jsonl", settings)
    rows = {r["request_id"]: r for r in read(tmp_path / "sft.jsonl")}
    assert rows["s1"]["messages"] == SERVED and rows["s1"]["prompt"] == "What is an alias?"
    assert rows["s1"]["completion"] == "A pointer to one version."
    assert "messages" not in rows["s2"] and rows["s2"]["prompt"] == "Where are prompts kept?"
    assert rows["s3"]["messages"] == SERVED and rows["s3"]["prompt"] == SERVED[1]["content"]
    build_dataset("kto", tmp_path / "kto.jsonl", settings)
    kto = [r for r in read(tmp_path / "kto.jsonl") if r["request_id"] == "s1"]
    assert {r["label"] for r in kto} == {False, True} and all(r["messages"] == SERVED for r in kto)


def test_redaction_covers_the_served_messages(settings, tmp_path: Path) -> None:
    served = [{"role": "system", "content": "Mail ada@example.com for help."},
              {"role": "user", "content": "Question: who helps?"}]
    append_rows(settings.lakehouse, "inference_log", [
        {**log_row("m1", "who helps?", "Ada."),
         "request": json.dumps({"question": "who helps?", "messages": served})}])
    append_rows(settings.lakehouse, "feedback", [fb("h1", "m1", 1, 1)])
    build_dataset("sft", tmp_path / "sft.jsonl", settings)
    assert read(tmp_path / "sft.jsonl")[0]["messages"][0]["content"] == "Mail [EMAIL] for help."


def test_an_sft_row_renders_the_prompt_the_chain_served(settings, project: Path,
                                                        tmp_path: Path, docs_indexed) -> None:
    """Through the real path: a logged chain answers (python API), feedback corrects it, and the
    training text of the SFT row starts with exactly the prompt the model was served."""
    from transformers import AutoTokenizer

    from llmops.chains import invoke, log_chain
    from llmops.feedback import NotebookAnswer, record_feedback
    from llmops.finetune.data import as_chat, read_rows
    from llmops.indexing import update_index
    from llmops.lakehouse import read_table
    from llmops.models import ensure_tiny_model
    from llmops.prompts import set_alias, sync_prompts

    sync_prompts(settings)
    set_alias("qa", "production", 1, settings)
    update_index(settings, progress=False, record=False)
    log_chain(project / "chains" / "docs_qa.py", alias="staging", settings=settings)
    question = "How do I promote a chain to production?"
    answer = invoke("docs-qa@staging", question, settings)
    noted = NotebookAnswer.from_result(answer, question=question, chain="docs-qa@staging",
                                       settings=settings)
    fix = "Run llmops chains promote NAME --alias production."
    record_feedback(noted, rating=-1, correction=fix, settings=settings)

    build_dataset("sft", tmp_path / "sft.jsonl", settings, redact=None)
    rows = read_rows(tmp_path / "sft.jsonl", "sft")
    assert len(rows) == 1
    logged = read_table(settings.lakehouse, "inference_log")
    served = json.loads(logged.set_index("request_id").loc[noted.request_id, "request"])["messages"]
    assert served == answer["messages"] and served[0]["role"] == "system"
    assert "[" in served[0]["content"]  # the retrieved context, headed by its sources

    tok = AutoTokenizer.from_pretrained(ensure_tiny_model(settings.models_dir,
                                                          settings.root / "docs"))
    chat = as_chat(rows, "sft")[0]
    full = tok.apply_chat_template(chat["prompt"] + chat["completion"], tokenize=False)
    prompt = tok.apply_chat_template(served, add_generation_prompt=True, tokenize=False)
    assert full.startswith(prompt) and full[len(prompt):].startswith(fix)


def test_feedback_older_than_the_retention_is_never_read(project: Path, tmp_path: Path) -> None:
    """With retention_days set, old feedback still in the table (``tables retain`` has not
    run) and feedback on a request older than the retention stay out of every dataset."""
    from llmops.config import load_settings

    now = datetime.now(timezone.utc)
    settings = load_settings(root=project)
    append_rows(settings.lakehouse, "inference_log", [
        {**log_row("old", "An old question?", "Old."), "ts": now - timedelta(days=40)},
        {**log_row("aged", "An aged question?", "Aged."), "ts": now - timedelta(days=31)},
        {**log_row("new", "A new question?", "New."), "ts": now - timedelta(days=1)},
    ])
    append_rows(settings.lakehouse, "feedback", [
        {**fb("f-old", "old", 1, 0, correction="Old fix."), "ts": now - timedelta(days=35)},
        {**fb("f-aged", "aged", 1, 0), "ts": now - timedelta(days=2)},  # its request is too old
        {**fb("f-new", "new", 1, 0), "ts": now},
    ])
    build_dataset("eval", tmp_path / "all.jsonl", settings)
    assert {r["request_id"] for r in read(tmp_path / "all.jsonl")} == {"old", "aged", "new"}

    text = (project / "llmops.yaml").read_text()
    (project / "llmops.yaml").write_text(text.replace("  dev: {}", "  dev:\n    retention_days: 30"))
    kept = load_settings(root=project)
    assert kept.retention_days == 30
    report = build_dataset("eval", tmp_path / "kept.jsonl", kept,
                           since=now - timedelta(days=365))  # an earlier since does not reach back
    assert [r["request_id"] for r in read(tmp_path / "kept.jsonl")] == ["new"]
    assert report.feedback_rows == 2  # f-old was not read
    out = run_cli("feedback", "dataset", "--kind", "sft", "--out", "data/sft.jsonl", cwd=project)
    assert out.returncode == 0, out.stderr
    assert [r["request_id"] for r in read(project / "data" / "sft.jsonl")] == ["new"]


def test_an_environment_that_redacts_redacts_its_datasets_too(settings, tmp_path: Path) -> None:
    """Rows logged before redaction was switched on hold personal data: the environment's
    redactor (Presidio) runs over every text, before the hook, whatever the hook."""
    from llmops.privacy import RedactionSettings

    redacting = settings.model_copy(update={"redaction": RedactionSettings(enabled=True)})
    append_rows(settings.lakehouse, "inference_log", [log_row(
        "p1", "I am ada@example.com, card 4111 1111 1111 1111: refund me?",
        "Refunded to GB82WEST12345698765432.")])
    append_rows(settings.lakehouse, "feedback", [
        fb("p", "p1", -1, 1, correction="Refunded; key sk-proj-Canary1234567890abcdefXYZ")])
    for redact in (None, "default"):
        out = tmp_path / f"sft-{redact}.jsonl"
        if redact is None:
            build_dataset("sft", out, redacting, redact=None)
        else:
            build_dataset("sft", out, redacting)
        [row] = read(out)
        assert row["prompt"] == "I am <EMAIL_ADDRESS>, card <CREDIT_CARD>: refund me?"
        assert row["completion"] == "Refunded; key <API_KEY>"
