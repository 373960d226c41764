"""Feedback on answers produced in a notebook: a widget, and the function it calls.

Sending feedback writes what the gateway writes for an answer it served: one
``inference_log`` row for the answer (the first time only) and one ``feedback`` row
(``source = notebook``) linked to it by ``request_id``, so the feedback-derived
datasets pick it up. The MLflow run that produced the answer shows the feedback
too (a tag per request and ``feedback_rating`` / ``feedback_score`` metrics), and
so does its trace, when there is one (MLflow assessments).
"""

from __future__ import annotations

import getpass
import html
import json
import os
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from llmops.config import Settings, load_settings
from llmops.errors import LlmopsError, MissingExtraError
from llmops.feedback.records import feedback_problem
from llmops.lakehouse import append_rows, name_and_version, open_table
from llmops.privacy import redacted_row, redactor_for
from llmops.registry import model_version

__all__ = ["FeedbackWidget", "NotebookAnswer", "feedback_widget", "record_feedback"]

SOURCE = "notebook"


class _NotOnRunWarning(UserWarning):
    """The feedback is recorded, but the MLflow run or trace could not be marked."""


def _plain(value: Any) -> Any:
    """A pandas / numpy scalar as the Python value it holds."""
    return value.item() if hasattr(value, "item") else value


@dataclass
class NotebookAnswer:
    """One answer produced in a notebook and what produced it (its lineage).

    ``request_id`` names the answer in ``inference_log``: a new id by default; give
    the id of an answer already logged (by the gateway, say) to add feedback to it.
    For a chain's answer, ``inputs`` holds the question and the messages the chain
    served (``{"question", "messages"}``, logged as the request, as the gateway logs
    it) and ``index_version`` the index version its retriever read.
    """

    answer: str
    inputs: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    trace_id: str | None = None
    prompt: str | None = None
    prompt_version: str | None = None
    chain: str | None = None
    chain_version: str | None = None
    model: str | None = None
    latency_ms: float | None = None
    index_version: str | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def from_result(
        cls,
        result: Any,
        row: int | None = None,
        *,
        question: str | None = None,
        chain: str | None = None,
        trace_id: str | None = None,
        request_id: str | None = None,
        settings: Settings | None = None,
    ) -> NotebookAnswer:
        """The answer in ``result``: a :func:`~llmops.prompts.try_prompt` trial (one ``row`` of
        it), a chain's answer dict (give the ``question`` and the ``chain`` reference), or a
        plain string.
        """
        extra: dict[str, Any] = {"trace_id": trace_id}
        if request_id:
            extra["request_id"] = request_id
        if hasattr(result, "run_id") and hasattr(result, "results"):  # a PromptTrial
            frame = result.results
            if row is None:
                if len(frame) != 1:
                    raise LlmopsError(f"the trial holds {len(frame)} answers: pass row=0 to "
                                      f"row={len(frame) - 1} to pick the one to give feedback on")
                row = 0
            if not 0 <= row < len(frame):
                raise LlmopsError(f"row {row} is out of range: the trial holds {len(frame)} answers")
            values = {k: _plain(v) for k, v in frame.iloc[row].to_dict().items()}
            latency = values.pop("latency_ms", None)
            return cls(answer=str(values.pop("output")), inputs=values, run_id=result.run_id,
                       prompt=result.prompt, prompt_version=str(result.prompt_version),
                       latency_ms=float(latency) if latency is not None else None, **extra)
        inputs = {"question": question} if question is not None else {}
        chain_name, chain_version = _resolve_chain(chain, settings)
        if isinstance(result, str):
            return cls(answer=result, inputs=inputs, chain=chain_name,
                       chain_version=chain_version, **extra)
        if isinstance(result, Mapping) and isinstance(result.get("answer"), str):
            if question is None:
                raise LlmopsError("a chain's answer does not hold its question: pass question=")
            prompt, prompt_version = name_and_version(result.get("prompt"))
            if isinstance(result.get("messages"), list):
                inputs["messages"] = result["messages"]
            index_version = result.get("index_version")
            return cls(answer=result["answer"], inputs=inputs, prompt=prompt,
                       prompt_version=prompt_version, chain=chain_name,
                       chain_version=chain_version, model=result.get("chat_model"),
                       index_version=str(index_version) if index_version else None, **extra)
        raise LlmopsError(
            f"cannot take feedback on a {type(result).__name__}: pass a try_prompt trial, "
            "a chain's answer dict, or the answer as a string"
        )


def _resolve_chain(ref: str | None, settings: Settings | None) -> tuple[str | None, str | None]:
    """``NAME/VERSION`` as is; ``NAME`` or ``NAME@ALIAS`` pinned to the version it names now."""
    if not ref:
        return None, None
    name, version = name_and_version(ref)
    if version is not None:
        return name, version
    found = model_version(ref, settings)
    return str(found.name), str(found.version)


def _check(rating: Any, score: Any, correction: Any, comment: Any) -> None:
    """The gateway's rules for a piece of feedback (``POST /v1/feedback``)."""
    problem = feedback_problem(rating, score, correction, comment)
    if problem:
        raise LlmopsError(problem)


def _is_logged(settings: Settings, request_id: str) -> bool:
    delta = open_table(settings.lakehouse, "inference_log")
    if delta is None:
        return False
    import pyarrow.compute as pc

    dataset = delta.to_pyarrow_dataset()
    return dataset.to_table(columns=["request_id"],
                            filter=pc.field("request_id") == request_id).num_rows > 0


def _append(settings: Settings, table: str, row: dict[str, Any], written: str) -> None:
    try:
        append_rows(settings.lakehouse, table, [row])
    except LlmopsError:
        raise
    except Exception as exc:  # noqa: BLE001 - any store failure, reported with what to do
        raise LlmopsError(
            f"cannot write the {table} table in {settings.lakehouse}: "
            f"{exc.__class__.__name__}: {exc}; {written}"
        ) from exc


def _mark_mlflow(answer: NotebookAnswer, row: dict[str, Any]) -> None:
    """Show the feedback on the run (and trace) that produced the answer."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import AssessmentSource

    if answer.run_id:
        client = MlflowClient()
        summary = {k: row[k] for k in ("feedback_id", "rating", "score") if row[k] is not None}
        summary["corrected"] = row["correction"] is not None
        client.set_tag(answer.run_id, f"llmops.feedback.{answer.request_id}", json.dumps(summary))
        for metric, value in (("feedback_rating", row["rating"]), ("feedback_score", row["score"])):
            if value is not None:
                client.log_metric(answer.run_id, metric, value)
    if answer.trace_id:
        source = AssessmentSource(source_type="HUMAN", source_id=row["user"] or "notebook")
        meta = {"request_id": answer.request_id, "feedback_id": row["feedback_id"]}
        for name, value in (("user_rating", row["rating"]), ("user_score", row["score"])):
            if value is not None:
                mlflow.log_feedback(trace_id=answer.trace_id, name=name, value=value,
                                    source=source, rationale=row["comment"], metadata=meta)
        if row["correction"] is not None:
            mlflow.log_expectation(trace_id=answer.trace_id, name="expected_response",
                                   value=row["correction"], source=source, metadata=meta)


def record_feedback(
    answer: NotebookAnswer,
    rating: int | None = None,
    score: int | None = None,
    correction: str | None = None,
    comment: str | None = None,
    user: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Record feedback on ``answer``; returns the ``feedback`` row written.

    ``rating`` is a thumbs up (1) or down (-1), ``score`` 1 to 5; at least one of
    them, a correction or a comment is needed. Everything is checked, and the
    MLflow run looked up, before anything is written.
    """
    correction = (correction.strip() or None) if isinstance(correction, str) else correction
    comment = (comment.strip() or None) if isinstance(comment, str) else comment
    _check(rating, score, correction, comment)
    settings = settings or load_settings()
    redactor = redactor_for(settings)  # what is written is redacted where the env redacts
    if redactor is not None:
        correction = redactor.redact(correction) if correction else correction
        comment = redactor.redact(comment) if comment else comment
    run = None
    if answer.run_id or answer.trace_id:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        from llmops.stores import connect

        connect(settings)
        what = f"run {answer.run_id}"
        try:
            if answer.run_id:
                run = MlflowClient().get_run(answer.run_id)
            what = f"trace {answer.trace_id}"
            if answer.trace_id and MlflowClient().get_trace(answer.trace_id) is None:
                raise MlflowException(f"no trace {answer.trace_id}")
        except MlflowException as exc:
            raise LlmopsError(
                f"MLflow {what} is not in the tracking store of environment '{settings.env}' "
                f"({settings.tracking_uri}): check the environment; nothing was recorded"
            ) from exc
    now = datetime.now(timezone.utc)
    try:
        logged = _is_logged(settings, answer.request_id)
    except ImportError as exc:
        raise MissingExtraError(exc.name or "deltalake", "index") from exc
    except Exception as exc:  # noqa: BLE001 - an unreadable table
        raise LlmopsError(f"cannot read the inference_log table in {settings.lakehouse}: "
                          f"{exc}; nothing was recorded") from exc
    if not logged:
        params = run.data.params if run is not None else {}
        request = json.dumps(answer.inputs, ensure_ascii=False, default=str)
        _append(settings, "inference_log", redacted_row(redactor, {
            "request_id": answer.request_id, "ts": now, "env": settings.env, "endpoint": SOURCE,
            "model": answer.model or params.get("chat_model"), "chain": answer.chain,
            "chain_version": answer.chain_version, "prompt": answer.prompt,
            "prompt_version": answer.prompt_version,
            "request": request, "response": answer.answer,
            "status": 200, "latency_ms": answer.latency_ms,
            "client": answer.run_id, "index_version": answer.index_version,
        }), "nothing was recorded")
    row = {
        "feedback_id": uuid.uuid4().hex, "request_id": answer.request_id, "ts": now,
        "rating": rating, "score": score, "correction": correction, "comment": comment,
        "source": SOURCE, "user": user or os.environ.get("LLMOPS_USER") or getpass.getuser(),
    }
    _append(settings, "feedback", row,
            "the answer is logged but the feedback is not: send it again")
    if run is not None or answer.trace_id:
        try:
            _mark_mlflow(answer, row)
        except Exception as exc:  # noqa: BLE001 - the lakehouse holds the feedback already
            warnings.warn(f"the feedback is recorded, but not shown on the MLflow run: {exc}",
                          _NotOnRunWarning, stacklevel=2)
    return row


def _ipywidgets() -> Any:
    try:
        import ipywidgets
    except ImportError as exc:
        raise MissingExtraError("ipywidgets", "notebook") from exc
    return ipywidgets


class FeedbackWidget:
    """Thumbs up / down, a 1-5 score, a correction and a comment under an answer.

    Display it in a notebook (it is an ipywidgets ``VBox``: :attr:`box`). The
    controls are plain widgets whose values can be set from code too; **Send**
    calls :meth:`record`. ``state`` is ``ready``, ``recorded`` or ``error``, and
    ``status`` says what happened in words.
    """

    def __init__(self, answer: NotebookAnswer, settings: Settings | None = None,
                 user: str | None = None) -> None:
        w = _ipywidgets()
        self.answer = answer
        self.settings = settings
        self.user = user
        self.state = "ready"
        self.sent: dict[str, Any] | None = None
        made_by = " · ".join(html.escape(part) for part in (
            f"{answer.prompt}/{answer.prompt_version}" if answer.prompt else "",
            f"chain {answer.chain}/{answer.chain_version}" if answer.chain else "",
            f"run {answer.run_id}" if answer.run_id else "",
        ) if part)
        self.header = w.HTML(f"<b>Feedback on this answer</b> <small>{made_by}</small>")
        self.thumbs_up = w.ToggleButton(icon="thumbs-up", tooltip="A good answer",
                                        layout=w.Layout(width="3em"))
        self.thumbs_down = w.ToggleButton(icon="thumbs-down", tooltip="A bad answer",
                                          layout=w.Layout(width="3em"))
        self.score = w.ToggleButtons(
            options=[("–", 0)] + [(str(i), i) for i in range(1, 6)], value=0,
            description="Score", tooltips=["no score", "1 (bad)", "2", "3", "4", "5 (good)"],
            style={"button_width": "2.5em"},
        )
        self.correction = w.Textarea(value=answer.answer, description="Correction",
                                     placeholder="the answer it should have given",
                                     layout=w.Layout(width="95%"))
        self.comment = w.Text(description="Comment", placeholder="optional",
                              layout=w.Layout(width="95%"))
        self.send = w.Button(description="Send", icon="paper-plane", button_style="primary")
        self.status = w.HTML("")
        self.thumbs_up.observe(self._exclusive, names="value")
        self.thumbs_down.observe(self._exclusive, names="value")
        self.send.on_click(self._on_send)
        self.box = w.VBox([
            self.header, w.HBox([self.thumbs_up, self.thumbs_down, self.score]),
            self.correction, self.comment, w.HBox([self.send, self.status]),
        ])

    @property
    def controls(self) -> list[Any]:
        return [self.thumbs_up, self.thumbs_down, self.score, self.correction, self.comment,
                self.send]

    @property
    def rating(self) -> int | None:
        return 1 if self.thumbs_up.value else -1 if self.thumbs_down.value else None

    def _exclusive(self, change: dict[str, Any]) -> None:
        if change["new"]:
            other = self.thumbs_down if change["owner"] is self.thumbs_up else self.thumbs_up
            other.value = False

    def record(self) -> dict[str, Any]:
        """Record what the controls hold; returns the ``feedback`` row.

        The correction box starts out holding the answer: left as it is, it is no
        correction. On failure the message shows under the controls, nothing is
        written that a retry would duplicate, and the error is raised.
        """
        text = self.correction.value.strip()
        correction = text if text and text != self.answer.answer.strip() else None
        self.status.value = "sending…"
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                row = record_feedback(self.answer, rating=self.rating,
                                      score=self.score.value or None, correction=correction,
                                      comment=self.comment.value, user=self.user,
                                      settings=self.settings)
        except Exception as exc:
            self.state = "error"
            self.status.value = (f"<span style='color:#b00'>✘ not recorded: "
                                 f"{html.escape(str(exc))}</span>")
            raise
        self.sent, self.state = row, "recorded"
        for control in self.controls:
            control.disabled = True
        notes = [c for c in caught if issubclass(c.category, _NotOnRunWarning)]
        for c in caught:  # any other warning goes where it would have gone
            if c not in notes:
                warnings.warn_explicit(c.message, c.category, c.filename, c.lineno)
        note = "".join(f"<br><small>{html.escape(str(c.message))}</small>" for c in notes)
        self.status.value = (f"<span style='color:#070'>✔ recorded</span> "
                             f"<small>feedback {row['feedback_id'][:8]} on request "
                             f"{row['request_id'][:8]}</small>{note}")
        return row

    def _on_send(self, _button: Any) -> None:
        try:
            self.record()
        except Exception:  # noqa: BLE001, S110 - the message is shown under the controls
            pass

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.box._repr_mimebundle_(**kwargs)


def feedback_widget(
    result: Any,
    row: int | None = None,
    *,
    question: str | None = None,
    chain: str | None = None,
    trace_id: str | None = None,
    request_id: str | None = None,
    user: str | None = None,
    settings: Settings | None = None,
) -> FeedbackWidget:
    """A feedback widget for the answer in ``result``; the last line of a cell shows it.

    ``result`` is a :func:`~llmops.prompts.try_prompt` trial (``row`` picks the
    answer when it holds several), a chain's answer dict (give the ``question`` and
    the ``chain``: ``NAME/VERSION``, or ``NAME@ALIAS`` resolved now), or a string.
    """
    answer = NotebookAnswer.from_result(result, row, question=question, chain=chain,
                                        trace_id=trace_id, request_id=request_id,
                                        settings=settings)
    return FeedbackWidget(answer, settings=settings, user=user)
