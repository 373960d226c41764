"""Human feedback: datasets for evaluation and fine-tuning built from the feedback table."""

from __future__ import annotations

from llmops.feedback.datasets import DatasetReport, build_dataset, redact_personal_data

__all__ = ["DatasetReport", "build_dataset", "redact_personal_data"]
