"""Evaluation datasets: a JSON lines file, or the latest feedback-derived eval set."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops.config import Settings
from llmops.errors import EvalDatasetError

__all__ = ["EvalDataset", "load_eval_dataset"]

FEEDBACK = "feedback"


@dataclass
class EvalDataset:
    """Rows of ``question`` / ``expected`` (optionally ``source`` and key ``fact``), with their origin."""

    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        """The rows in ``mlflow.genai.evaluate``'s shape: inputs and expectations."""
        out = []
        for row in self.rows:
            expectations = {"expected_response": row["expected"]}
            if row.get("source"):
                expectations["expected_source"] = row["source"]
            if row.get("fact"):
                expectations["expected_fact"] = row["fact"]
            out.append({"inputs": {"question": row["question"]}, "expectations": expectations})
        return out


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise EvalDatasetError(f"{path}:{number}: not valid JSON ({exc})") from exc
        if not isinstance(row, dict):
            raise EvalDatasetError(f"{path}:{number}: each line must be a JSON object")
        question = row.get("question")
        expected = row.get("expected", row.get("expected_response"))
        if not isinstance(question, str) or not question.strip():
            raise EvalDatasetError(f"{path}:{number}: 'question' must be a non-empty string")
        if not isinstance(expected, str):
            raise EvalDatasetError(f"{path}:{number}: 'expected' must be a string")
        rows.append({**row, "question": question, "expected": expected})
    return rows


def load_eval_dataset(spec: str | Path, settings: Settings) -> EvalDataset:
    """``spec`` is a JSON lines file (relative to the project root) or ``feedback``.

    ``feedback`` builds the eval set from the feedback tables now (corrections,
    and answers rated good); it may be empty. A file must exist and hold rows.
    """
    if str(spec) == FEEDBACK:
        from llmops.feedback import build_dataset

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "feedback.jsonl"
            build_dataset("eval", out, settings)
            return EvalDataset(FEEDBACK, _read_jsonl(out))
    path = Path(spec)
    path = path if path.is_absolute() else settings.root / path
    if not path.is_file():
        raise EvalDatasetError(f"evaluation dataset '{spec}' does not exist (looked at {path})")
    rows = _read_jsonl(path)
    if not rows:
        raise EvalDatasetError(f"evaluation dataset '{spec}' has no rows")
    return EvalDataset(path.stem, rows)
