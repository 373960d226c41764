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
