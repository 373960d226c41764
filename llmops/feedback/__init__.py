"""Human feedback: a notebook widget that records it, and datasets built from the feedback table."""

from __future__ import annotations

from llmops.feedback.datasets import DatasetReport, build_dataset, redact_personal_data
from llmops.feedback.widget import (
    FeedbackWidget,
    NotebookAnswer,
    feedback_widget,
    record_feedback,
)

__all__ = [
    "DatasetReport",
    "FeedbackWidget",
    "NotebookAnswer",
    "build_dataset",
    "feedback_widget",
    "record_feedback",
    "redact_personal_data",
]
