from __future__ import annotations

import pytest

from llmops.evals import exact_match_score, normalize_answer, token_f1


def test_normalisation_drops_case_punctuation_and_articles() -> None:
    assert normalize_answer("The  Alias, @production!") == "alias production"


@pytest.mark.parametrize(("prediction", "expected", "f1"), [
    ("Run llmops chains promote.", "run llmops chains promote", 1.0),
    ("llmops chains promote", "run llmops chains promote", 2 * 1.0 * 0.75 / 1.75),
    ("something else entirely", "run llmops chains promote", 0.0),
    ("", "", 1.0),
    ("", "an answer", 0.0),
])
def test_token_f1(prediction: str, expected: str, f1: float) -> None:
    assert token_f1(prediction, expected) == pytest.approx(f1)


def test_exact_match_after_normalisation() -> None:
    assert exact_match_score("Python 3.10 or newer", "python 310 or newer.") == 1.0
    assert exact_match_score("Python 3.11", "Python 3.10") == 0.0


@pytest.mark.parametrize(("answer", "fact", "hit"), [
    ("Every request lands in the inference_log table.", "inference_log", 1.0),
    ("It exits 3 when a threshold is crossed.", "exits 3", 1.0),
    ("It exits 30 times.", "exits 3", 0.0),  # whole words only
    ("The gateway logs requests.", "inference_log", 0.0),
    ("Anything", "", 0.0),
])
def test_fact_hit_looks_for_the_whole_normalised_phrase(answer: str, fact: str, hit: float) -> None:
    from llmops.evals.scorers import fact_hit

    assert fact_hit(answer, fact) == hit


def test_scorers_that_need_a_missing_column_are_left_out() -> None:
    from llmops.evals.scorers import default_scorers, scorers_for

    scorers = default_scorers()
    names = lambda rows: [s.name for s in scorers_for(scorers, rows)]  # noqa: E731
    full = [{"question": "q", "expected": "e", "source": "docs/a.md", "fact": "e"}]
    assert names(full) == [s.name for s in scorers]
    feedback = [{"question": "q", "expected": "e"}]
    assert "source_hit" not in names(feedback) and "fact_hit" not in names(feedback)
    assert {"exact_match", "token_f1", "answer_length", "latency_ms"} <= set(names(feedback))
