"""Scorers for question answering, as MLflow scorers (``mlflow.genai.scorers.Scorer``).

A chain's prediction (``outputs``) is ``{"answer", "sources", "latency_ms"}``;
``expectations`` holds ``expected_response`` and, where known, ``expected_source``.
The text metrics follow SQuAD's normalisation: lower case, no punctuation, no articles.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from pathlib import PurePosixPath
from typing import Any

__all__ = ["default_scorers", "exact_match_score", "fact_hit", "judge_scorer", "normalize_answer",
           "scorers_for", "token_f1"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    return " ".join(_ARTICLES.sub(" ", (text or "").lower().translate(_PUNCT)).split())


def token_f1(prediction: str, expected: str) -> float:
    """Harmonic mean of token precision and recall after normalisation (0..1)."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(expected).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction: str, expected: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(expected))


def fact_hit(prediction: str, fact: str) -> float:
    """1.0 when the answer holds the key fact (both normalised), else 0.0."""
    wanted = normalize_answer(fact)
    return float(bool(wanted) and f" {wanted} " in f" {normalize_answer(prediction)} ")


def _answer(outputs: Any) -> str:
    if isinstance(outputs, dict):
        return str(outputs.get("answer") or "")
    return "" if outputs is None else str(outputs)


def default_scorers() -> list[Any]:
    """exact_match, token_f1, fact_hit, source_hit, answer_length (words) and latency_ms."""
    from mlflow.entities import Feedback
    from mlflow.genai.scorers import scorer

    @scorer
    def exact_match(outputs: Any, expectations: dict[str, Any]) -> float:
        return exact_match_score(_answer(outputs), expectations.get("expected_response", ""))

    @scorer(name="token_f1")
    def token_f1_scorer(outputs: Any, expectations: dict[str, Any]) -> float:
        return token_f1(_answer(outputs), expectations.get("expected_response", ""))

    @scorer
    def source_hit(outputs: Any, expectations: dict[str, Any]) -> Feedback:
        wanted = expectations.get("expected_source")
        if not wanted:
            return Feedback(value=None, error="the example names no expected source")
        got = {PurePosixPath(str(s)).name for s in (outputs or {}).get("sources", [])}
        return Feedback(value=float(PurePosixPath(wanted).name in got),
                        rationale=f"retrieved {sorted(got)}")

    @scorer(name="fact_hit")
    def fact_hit_scorer(outputs: Any, expectations: dict[str, Any]) -> Feedback:
        wanted = expectations.get("expected_fact")
        if not wanted:
            return Feedback(value=None, error="the example names no key fact")
        return Feedback(value=fact_hit(_answer(outputs), wanted), rationale=f"looked for {wanted!r}")

    @scorer
    def answer_length(outputs: Any) -> float:
        return float(len(_answer(outputs).split()))

    @scorer
    def latency_ms(outputs: Any) -> float:
        return float((outputs or {}).get("latency_ms", 0.0)) if isinstance(outputs, dict) else 0.0

    return [exact_match, token_f1_scorer, fact_hit_scorer, source_hit, answer_length, latency_ms]


# scorers that need an expectation some datasets lack (the feedback set names no source)
NEEDS = {"source_hit": "source", "fact_hit": "fact"}


def scorers_for(scorers: list[Any], rows: list[dict[str, Any]]) -> list[Any]:
    """The scorers that apply to ``rows``: one that needs a column no row has is left out,
    rather than recorded as an error on every row."""
    return [s for s in scorers
            if s.name not in NEEDS or any(row.get(NEEDS[s.name]) for row in rows)]


JUDGE_PROMPT = (
    "You grade answers to questions about a software project.\n"
    "Question: {question}\nReference answer: {expected}\nAnswer to grade: {answer}\n"
    "Reply with one digit from 1 (wrong) to 5 (fully correct), then one sentence of reason."
)


def judge_scorer(base_url: str, model: str, api_key: str | None = None,
                 timeout_s: float = 60.0) -> Any:
    """An LLM-as-judge scorer that asks the serving endpoint (OpenAI API) to grade 1-5.

    The grade is scaled to 0..1; a reply without a digit from 1 to 5 is recorded
    as an error on that row, not as a score.
    """
    import openai
    from mlflow.entities import Feedback
    from mlflow.genai.scorers import scorer

    client = openai.OpenAI(base_url=base_url.rstrip("/") + "/v1", api_key=api_key or "none",
                           timeout=timeout_s, max_retries=1)

    @scorer(name="judge")
    def judge(inputs: dict[str, Any], outputs: Any, expectations: dict[str, Any]) -> Feedback:
        prompt = JUDGE_PROMPT.format(question=inputs.get("question", ""),
                                     expected=expectations.get("expected_response", ""),
                                     answer=_answer(outputs))
        try:
            reply = client.chat.completions.create(
                model=model, temperature=0.0, max_tokens=32,
                messages=[{"role": "user", "content": prompt}])
        except openai.OpenAIError as exc:
            return Feedback(value=None, error=f"the judge endpoint failed: {exc.__class__.__name__}")
        text = reply.choices[0].message.content or ""
        grade = re.search(r"[1-5]", text)
        if grade is None:
            return Feedback(value=None, error=f"the judge gave no grade: {text[:80]!r}")
        return Feedback(value=(int(grade.group()) - 1) / 4, rationale=text[:500])

    return judge
