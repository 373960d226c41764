"""Examples from feedback: corrections as expected answers, answers rated good as good ones.

The examples are the ``eval`` feedback dataset (``llmops.feedback``): each a question, an
expected answer (a user's correction, or an answer they rated good) and the prompt version
it was served with. They are split by question into a training set (where demonstrations
come from, what GEPA reflects on) and a held-out set (what candidates are scored on): a
question's paraphrase-free identity decides its side, so the split is stable across runs.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.config import Settings
from llmops.errors import LlmopsError
from llmops.feedback import build_dataset
from llmops.optimize.config import OptimizeConfig

__all__ = ["Example", "FeedbackExamples", "feedback_examples", "split_examples"]


@dataclass(frozen=True)
class Example:
    question: str
    expected: str
    origin: str  # "correction" or "rated_good"
    prompt_version: str | None = None


@dataclass
class FeedbackExamples:
    train: list[Example]
    heldout: list[Example]
    feedback_version: int | None  # the feedback table's Delta version read
    rows: int  # examples before the split


def _side(question: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{question.strip().lower()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_examples(examples: list[Example], config: OptimizeConfig
                   ) -> tuple[list[Example], list[Example]]:
    """Train and held-out examples, or a clear error when there are too few for both."""
    need = config.min_train + config.min_heldout
    if len(examples) < need:
        raise LlmopsError(
            f"too few feedback examples for a held-out set: {len(examples)} with an expected "
            f"answer (a correction or an answer rated good), {need} needed ({config.min_train} "
            f"to search with, {config.min_heldout} held out); collect more feedback first")
    ranked = sorted(examples, key=lambda e: _side(e.question, config.seed))
    n_held = min(max(config.min_heldout, round(len(ranked) * config.heldout_fraction)),
                 len(ranked) - config.min_train)
    return ranked[n_held:], ranked[:n_held]


def _feedback_version(settings: Settings) -> int | None:
    from llmops.lakehouse import open_table

    table = open_table(settings.lakehouse, "feedback")
    return None if table is None else int(table.version())


def feedback_examples(settings: Settings, prompt: str, config: OptimizeConfig,
                      chain: str | None = None) -> FeedbackExamples:
    """The examples feedback gives for prompt ``prompt`` (its name), split."""
    version = _feedback_version(settings)
    if version is None:
        raise LlmopsError(f"no feedback yet in environment '{settings.env}': serve the chain, "
                          "collect ratings and corrections, then optimize")
    with tempfile.TemporaryDirectory() as tmp:
        report = build_dataset("eval", Path(tmp) / "eval.jsonl", settings, chain=chain)
        rows: list[dict[str, Any]] = [json.loads(line) for line in
                                      report.out.read_text(encoding="utf-8").splitlines() if line]
    if report.feedback_rows == 0:
        raise LlmopsError(f"no feedback yet in environment '{settings.env}': serve the chain, "
                          "collect ratings and corrections, then optimize")
    examples = [Example(r["question"], r["expected"], r.get("origin") or "rated_good",
                        r.get("prompt_version")) for r in rows
                if r.get("question") and r.get("expected")
                and (r.get("prompt_name") in (None, prompt))]
    if config.heldout:
        train, heldout = examples, _heldout_file(Path(config.heldout), examples, config)
    else:
        train, heldout = split_examples(examples, config)
    return FeedbackExamples(train, heldout, version, len(examples))


def _heldout_file(path: Path, train: list[Example], config: OptimizeConfig) -> list[Example]:
    """The file's examples whose question is not one the search learns from."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError) as exc:
        raise LlmopsError(f"cannot read the held-out examples {path}: {exc}") from exc
    seen = {e.question.strip().lower() for e in train}
    held = [Example(str(r["question"]), str(r["expected"]), "heldout") for r in rows
            if isinstance(r, dict) and r.get("question") and r.get("expected")
            and str(r["question"]).strip().lower() not in seen]
    if len(train) < config.min_train or len(held) < config.min_heldout:
        raise LlmopsError(
            f"too few examples: {len(train)} from feedback to search with ({config.min_train} "
            f"needed) and {len(held)} held out in {path} ({config.min_heldout} needed, each "
            "with question and expected, none asked in the feedback)")
    return held
