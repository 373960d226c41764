"""The notebook feedback widget, driven through its model state (values set, Send clicked)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from llmops.errors import LlmopsError
from llmops.feedback import (
    FeedbackWidget,
    NotebookAnswer,
    build_dataset,
    feedback_widget,
    record_feedback,
)
from llmops.lakehouse import append_rows, read_table
from llmops.prompts import sync_prompts, try_prompt
from llmops.stores import connect

CONTEXT = "llmops chains promote NAME --alias production --version N moves an alias."
INPUTS = [
    {"question": "How do I promote a chain?", "context": CONTEXT},
    {"question": "What moves an alias?", "context": CONTEXT},
]
CORRECTION = "Run llmops chains promote NAME --alias production --version N."


def tables(settings) -> tuple:
    return read_table(settings.lakehouse, "inference_log"), read_table(settings.lakehouse, "feedback")


def test_feedback_on_a_prompt_trial(settings, tmp_path) -> None:
    sync_prompts(settings)
    trial = try_prompt("qa/1", INPUTS, settings=settings)
    with pytest.raises(LlmopsError, match="holds 2 answers: pass row=0 to row=1"):
        feedback_widget(trial, settings=settings)
    widget = feedback_widget(trial, row=1, settings=settings, user="ada")
    assert widget.correction.value == trial.outputs[1]  # pre-filled with the answer
    assert widget.state == "ready" and not widget.send.disabled

    widget.thumbs_down.value = True
    widget.score.value = 2
    widget.correction.value = CORRECTION
    widget.comment.value = "wrong command"
    widget.send.click()

    assert widget.state == "recorded"
    assert "recorded" in widget.status.value
    assert all(control.disabled for control in widget.controls)
    log, feedback = tables(settings)
    assert len(log) == 1 and len(feedback) == 1
    fb, req = feedback.iloc[0], log.iloc[0]
    assert (fb["source"], fb["rating"], fb["score"], fb["user"]) == ("notebook", -1, 2, "ada")
    assert (fb["correction"], fb["comment"]) == (CORRECTION, "wrong command")
    assert fb["request_id"] == req["request_id"] == widget.sent["request_id"]
    assert (req["endpoint"], req["status"], req["env"]) == ("notebook", 200, "dev")
    assert (req["prompt"], req["prompt_version"], req["client"]) == ("qa", "1", trial.run_id)
    assert json.loads(req["request"]) == INPUTS[1]
    assert req["response"] == trial.outputs[1]
    assert req["latency_ms"] == pytest.approx(trial.results["latency_ms"][1])
    run = MlflowClient().get_run(trial.run_id)
    assert req["model"] == run.data.params["chat_model"]
    assert run.data.metrics["feedback_rating"] == -1 and run.data.metrics["feedback_score"] == 2
    mark = json.loads(run.data.tags[f"llmops.feedback.{req['request_id']}"])
    assert mark == {"feedback_id": fb["feedback_id"], "rating": -1, "score": 2, "corrected": True}

    report = build_dataset("sft", tmp_path / "sft.jsonl", settings=settings)
    rows = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert report.rows == 1
    assert rows[0]["prompt"] == INPUTS[1]["question"]
    assert (rows[0]["completion"], rows[0]["origin"]) == (CORRECTION, "correction")
    assert (rows[0]["prompt_name"], rows[0]["prompt_version"]) == ("qa", "1")


def test_thumbs_are_exclusive_and_an_untouched_correction_is_none(settings) -> None:
    widget = feedback_widget("Use the CLI.", question="How do I promote?", settings=settings)
    widget.thumbs_down.value = True
    widget.thumbs_up.value = True
    assert (widget.thumbs_down.value, widget.rating) == (False, 1)
    widget.send.click()
    assert widget.state == "recorded"
    log, feedback = tables(settings)
    fb = feedback.iloc[0]
    assert fb["rating"] == 1 and pd.isna(fb["correction"]) and pd.isna(fb["comment"])
    assert json.loads(log.iloc[0]["request"]) == {"question": "How do I promote?"}
    assert pd.isna(log.iloc[0]["client"])  # no MLflow run produced it


def test_nothing_to_send_is_refused_and_writes_nothing(settings) -> None:
    widget = feedback_widget("Use the CLI.", question="How?", settings=settings)
    widget.comment.value = "   "
    widget.send.click()
    assert widget.state == "error"
    assert "give a thumbs up or down, a score, a correction or a comment" in widget.status.value
    assert not widget.send.disabled  # fix it and send again
    assert not settings.lakehouse.exists()
    with pytest.raises(LlmopsError, match="score must be an integer from 1 to 5"):
        record_feedback(NotebookAnswer("x"), score=6, settings=settings)


def test_a_lakehouse_that_cannot_be_written(settings) -> None:
    blocked = settings.model_copy(update={"lakehouse": settings.root / "not-a-folder"})
    blocked.lakehouse.write_text("a file where the lakehouse should be")
    widget = feedback_widget("Use the CLI.", question="How?", settings=blocked)
    widget.thumbs_up.value = True
    widget.send.click()
    assert widget.state == "error"
    assert "cannot write the inference_log table" in widget.status.value
    assert "nothing was recorded" in widget.status.value
    assert blocked.lakehouse.read_text() == "a file where the lakehouse should be"


def test_a_failed_feedback_write_can_be_sent_again(settings) -> None:
    (settings.lakehouse / "feedback").mkdir(parents=True)
    (settings.lakehouse / "feedback" / "_delta_log").write_text("in the way")
    widget = feedback_widget("Use the CLI.", question="How?", settings=settings)
    widget.thumbs_up.value = True
    with pytest.raises(LlmopsError, match="the answer is logged but the feedback is not"):
        widget.record()
    assert "send it again" in widget.status.value
    assert len(read_table(settings.lakehouse, "inference_log")) == 1
    shutil.rmtree(settings.lakehouse / "feedback")
    widget.send.click()
    assert widget.state == "recorded"
    log, feedback = tables(settings)
    assert len(log) == 1 and len(feedback) == 1  # the answer is not logged twice


def test_an_unknown_run_writes_nothing(settings) -> None:
    widget = FeedbackWidget(NotebookAnswer("Use the CLI.", run_id="0" * 32), settings=settings)
    widget.thumbs_up.value = True
    widget.send.click()
    assert widget.state == "error"
    assert f"run {'0' * 32} is not in the tracking store" in widget.status.value
    assert not settings.lakehouse.exists()


def test_a_chain_answer_with_its_trace(settings) -> None:
    connect(settings)

    @mlflow.trace
    def docs_qa(question: str) -> dict:
        return {"answer": "Use the CLI.", "sources": ["chains.md"], "prompt": "qa/1",
                "chat_model": "local:tiny"}

    answer = docs_qa("How do I promote?")
    trace_id = mlflow.get_last_active_trace_id()
    with pytest.raises(LlmopsError, match="pass question="):
        feedback_widget(answer, chain="docs_qa/3", settings=settings)
    widget = feedback_widget(answer, question="How do I promote?", chain="docs_qa/3",
                             trace_id=trace_id, settings=settings)
    widget.score.value = 5
    widget.correction.value = "Run llmops chains promote."
    widget.send.click()
    assert widget.state == "recorded", widget.status.value
    req = read_table(settings.lakehouse, "inference_log").iloc[0]
    assert (req["chain"], req["chain_version"]) == ("docs_qa", "3")
    assert (req["prompt"], req["prompt_version"], req["model"]) == ("qa", "1", "local:tiny")
    assessments = {a.name: a for a in mlflow.get_trace(trace_id).info.assessments}
    assert assessments["user_score"].value == 5
    assert assessments["expected_response"].value == "Run llmops chains promote."
    assert assessments["user_score"].source.source_type == "HUMAN"


def test_feedback_on_an_answer_logged_elsewhere(settings) -> None:
    append_rows(settings.lakehouse, "inference_log", [{
        "request_id": "r1", "ts": datetime.now(timezone.utc), "endpoint": "/v1/chains/docs_qa/invoke",
        "request": json.dumps({"question": "How?"}), "response": "Use the CLI.", "status": 200,
    }])
    widget = feedback_widget("Use the CLI.", request_id="r1", settings=settings)
    widget.comment.value = "good enough"
    widget.send.click()
    log, feedback = tables(settings)
    assert len(log) == 1
    assert (feedback.iloc[0]["request_id"], feedback.iloc[0]["comment"]) == ("r1", "good enough")


def test_the_widget_displays(settings) -> None:
    widget = feedback_widget("Use the CLI.", settings=settings)
    bundle = widget._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == widget.box.model_id
