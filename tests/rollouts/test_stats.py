"""The rollout statistics: valid under continuous monitoring, powerful enough, exact at the edges.

The simulations consult the verdict after every single rating. They run vectorised: one
row per simulated rollout, cumulative counts along the row, all looks scored at once by
``confidence_bounds`` (the array form of ``compare``'s interval).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmops.rollouts
from llmops.rollouts import (
    DEFAULT_MIN_RATED,
    ArmCounts,
    compare,
    confidence_bounds,
    confidence_sequence,
    latency_p95_not_worse,
    rate_confidence_sequence,
    rate_not_worse,
)

ALPHA = 0.05
RUNS = 1000
AA_HORIZON = 3000

# With a 10-point difference (0.60 vs 0.70) at 50/50, 90% of rollouts decide within this many
# ratings (both arms together). Found by simulation: over several seeds the 90th percentile is
# about 1,900-2,000 and 92-94% decide within 2,100, so the seeded test below is not on a
# knife's edge (1,000 runs: standard error of the share about 0.008).
RATINGS_FOR_90_PERCENT_POWER = 2100


def first_decisions(
    p_production: float,
    p_candidate: float,
    share: float,
    *,
    horizon: int,
    seed: int,
    margin: float = 0.0,
    chunk: int = 250,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate ``RUNS`` rollouts; per run, the rating count at its first "better" / "worse" (0: never).

    Each rating goes to the candidate with probability ``share``; ``compare``'s rule is applied
    after every rating: a verdict once both arms have ``DEFAULT_MIN_RATED`` ratings and the
    interval excludes zero. With a ``margin``, "better" means the interval lies above
    ``margin`` (``rate_not_worse``'s breach, the rates then being error rates).
    """
    rng = np.random.default_rng(seed)
    better = np.zeros(RUNS, dtype=np.int64)
    worse = np.zeros(RUNS, dtype=np.int64)
    for start in range(0, RUNS, chunk):
        rows = min(chunk, RUNS - start)
        to_candidate = rng.random((rows, horizon)) < share
        draw = rng.random((rows, horizon))
        up = np.where(to_candidate, draw < p_candidate, draw < p_production)
        candidate_rated = np.cumsum(to_candidate, axis=1, dtype=np.int32)
        production_rated = np.arange(1, horizon + 1, dtype=np.int32) - candidate_rated
        candidate_up = np.cumsum(up & to_candidate, axis=1, dtype=np.int32)
        production_up = np.cumsum(up & ~to_candidate, axis=1, dtype=np.int32)
        low, high = confidence_bounds(production_rated, production_up, candidate_rated, candidate_up)
        enough = np.minimum(production_rated, candidate_rated) >= DEFAULT_MIN_RATED
        for decided, out in ((enough & (low > margin), better), (enough & (high < -margin), worse)):
            out[start:start + rows] = np.where(decided.any(axis=1), decided.argmax(axis=1) + 1, 0)
    return better, worse


@pytest.mark.parametrize("share", [0.05, 0.5])
@pytest.mark.parametrize("base_rate", [0.5, 0.8])
def test_aa_rollouts_rarely_decide_however_often_they_are_read(base_rate: float, share: float) -> None:
    better, worse = first_decisions(base_rate, base_rate, share, horizon=AA_HORIZON, seed=11)
    false_decisions = float(np.mean((better > 0) | (worse > 0)))
    # Ville's inequality bounds the true rate by alpha over an infinite horizon; simulations
    # measure about 1% at most here, far enough below 0.05 to need no binomial slack.
    assert false_decisions <= ALPHA


@pytest.mark.parametrize("candidate_is_better", [True, False])
def test_a_ten_point_difference_is_found_within_n_ratings(candidate_is_better: bool) -> None:
    production, candidate = (0.60, 0.70) if candidate_is_better else (0.70, 0.60)
    better, worse = first_decisions(
        production, candidate, 0.5, horizon=RATINGS_FOR_90_PERCENT_POWER, seed=23
    )
    right, wrong = (better, worse) if candidate_is_better else (worse, better)
    assert np.mean(right > 0) >= 0.90
    assert np.mean(wrong > 0) <= ALPHA


@pytest.mark.parametrize("share", [0.05, 0.5])
def test_error_rate_guardrail_rarely_breaches_when_the_candidate_is_within_the_margin(share: float) -> None:
    # The least favourable truth for the guardrail: the candidate exactly `margin` worse.
    breached, _ = first_decisions(0.02, 0.03, share, horizon=AA_HORIZON, seed=31, margin=0.01)
    assert np.mean(breached > 0) <= ALPHA


def test_public_api() -> None:
    assert set(llmops.rollouts.__all__) >= {
        "DEFAULT_MIN_RATED", "DEFAULT_TUNED_FOR", "ArmCounts", "Comparison", "GuardrailVerdict",
        "Verdict", "compare", "confidence_bounds", "confidence_sequence", "latency_p95_not_worse",
        "rate_confidence_sequence", "rate_not_worse",
    }


def test_arm_counts_are_checked_and_rate_is_nan_before_any_rating() -> None:
    assert ArmCounts(10, 4).rate == 0.4
    assert math.isnan(ArmCounts(0, 0).rate)
    with pytest.raises(ValueError, match="negative"):
        ArmCounts(-1, 0)
    with pytest.raises(ValueError, match="cannot exceed"):
        ArmCounts(3, 4)


def test_no_ratings_at_all_leaves_everything_open() -> None:
    result = compare(ArmCounts(0, 0), ArmCounts(0, 0), min_rated=0)
    assert (result.low, result.high) == (-1.0, 1.0)
    assert math.isnan(result.difference)
    assert result.production_interval == result.candidate_interval == (0.0, 1.0)
    assert result.verdict == "no_difference_yet"


def test_one_empty_arm_bounds_the_difference_by_the_other_arm_alone() -> None:
    low, high = confidence_sequence(ArmCounts(400, 200), ArmCounts(0, 0))
    assert -1.0 < low < -0.5 and 0.5 < high < 1.0


def test_all_up_against_all_down_is_better_and_stays_within_range() -> None:
    result = compare(ArmCounts(200, 0), ArmCounts(200, 200))
    assert result.verdict == "better"
    assert result.difference == 1.0
    assert 0.0 < result.low < result.high == 1.0
    assert result.candidate_interval[1] == 1.0 and result.production_interval[0] == 0.0
    assert compare(ArmCounts(200, 200), ArmCounts(200, 0)).verdict == "worse"


def test_identical_perfect_arms_show_no_difference() -> None:
    result = compare(ArmCounts(300, 300), ArmCounts(300, 300))
    assert result.verdict == "no_difference_yet"
    assert -1.0 < result.low < 0.0 < result.high < 1.0
    assert result.low == pytest.approx(-result.high)


def test_no_verdict_before_min_rated_on_both_arms() -> None:
    production, candidate = ArmCounts(1000, 100), ArmCounts(49, 49)
    assert compare(production, candidate).verdict == "too_few"
    assert compare(production, candidate, min_rated=49).verdict == "better"
    assert compare(production, ArmCounts(50, 50)).verdict == "better"
    assert compare(ArmCounts(49, 0), ArmCounts(1000, 900)).verdict == "too_few"


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.05, 1.5, float("nan")])
def test_alpha_outside_zero_one_is_refused(alpha: float) -> None:
    counts = ArmCounts(100, 50)
    with pytest.raises(ValueError, match="alpha must lie strictly between 0 and 1"):
        compare(counts, counts, alpha=alpha)
    with pytest.raises(ValueError, match="alpha must lie strictly between 0 and 1"):
        rate_not_worse(1, 100, 1, 100, margin=0.01, alpha=alpha)


def test_other_bad_arguments_are_refused() -> None:
    counts = ArmCounts(100, 50)
    with pytest.raises(ValueError, match="tuned_for"):
        compare(counts, counts, tuned_for=0)
    with pytest.raises(ValueError, match="min_rated"):
        compare(counts, counts, min_rated=-1)
    with pytest.raises(ValueError, match="margin"):
        rate_not_worse(1, 100, 1, 100, margin=-0.01)
    with pytest.raises(ValueError, match="production counts must satisfy 0 <= errors <= total"):
        rate_not_worse(101, 100, 1, 100, margin=0.01)
    with pytest.raises(ValueError, match="candidate counts"):
        confidence_bounds([10], [5], [10], [11])


def test_array_bounds_agree_with_compare() -> None:
    production = [(0, 0), (60, 30), (500, 400), (2000, 1210)]
    candidate = [(0, 0), (7, 7), (480, 300), (150, 120)]
    low, high = confidence_bounds(*np.array(production).T, *np.array(candidate).T)
    for i, (p, c) in enumerate(zip(production, candidate, strict=True)):
        result = compare(ArmCounts(*p), ArmCounts(*c), min_rated=0)
        assert (result.low, result.high) == (low[i], high[i])


def test_error_rate_guardrail_outcomes() -> None:
    assert rate_not_worse(0, 10, 10, 10, margin=0.01) == "too_few"
    assert rate_not_worse(20, 1000, 22, 1000, margin=0.01) == "ok"
    assert rate_not_worse(20, 1000, 200, 1000, margin=0.01) == "breached"
    # Worse, but by less than the margin allows: not a breach.
    assert rate_not_worse(20, 1000, 200, 1000, margin=0.25) == "ok"
    # Better is never a breach.
    assert rate_not_worse(200, 1000, 20, 1000, margin=0.0) == "ok"


def test_latency_guardrail_outcomes() -> None:
    rng = np.random.default_rng(5)
    production = rng.lognormal(0.0, 0.5, 2000)
    assert latency_p95_not_worse(production, production[:99]) == "too_few"
    assert latency_p95_not_worse(production, rng.lognormal(0.0, 0.5, 2000)) == "ok"
    assert latency_p95_not_worse(production, 1.5 * rng.lognormal(0.0, 0.5, 2000)) == "breached"
    assert latency_p95_not_worse(production, 1.5 * production, margin_ratio=0.6) == "ok"
    with pytest.raises(ValueError, match="finite"):
        latency_p95_not_worse(production, [1.0, float("nan")] * 100)
    with pytest.raises(ValueError, match="margin_ratio"):
        latency_p95_not_worse(production, production, margin_ratio=-0.1)


arms = st.integers(min_value=1, max_value=3000).flatmap(
    lambda rated: st.tuples(st.just(rated), st.integers(min_value=0, max_value=rated))
)


@settings(max_examples=200, deadline=None)
@given(
    production=arms,
    candidate=arms,
    scale=st.integers(min_value=2, max_value=40),
    alpha=st.sampled_from([0.01, 0.05, 0.1, 0.2]),
)
def test_intervals_hold_the_estimate_and_shrink_as_counts_grow(
    production: tuple[int, int], candidate: tuple[int, int], scale: int, alpha: float
) -> None:
    small = compare(ArmCounts(*production), ArmCounts(*candidate), alpha=alpha, min_rated=0)
    large = compare(
        ArmCounts(production[0] * scale, production[1] * scale),
        ArmCounts(candidate[0] * scale, candidate[1] * scale),
        alpha=alpha,
        min_rated=0,
    )
    eps = 1e-12
    for result in (small, large):
        assert -1.0 <= result.low <= result.difference <= result.high <= 1.0
        for arm, (low, high) in ((result.production, result.production_interval),
                                 (result.candidate, result.candidate_interval)):
            assert 0.0 <= low <= arm.rate <= high <= 1.0
    # Same rates, more evidence: each interval is nested in the smaller sample's.
    assert small.low - eps <= large.low and large.high <= small.high + eps
    for before, after in ((small.production_interval, large.production_interval),
                          (small.candidate_interval, large.candidate_interval)):
        assert before[0] - eps <= after[0] and after[1] <= before[1] + eps


def test_per_arm_interval_matches_its_width_formula() -> None:
    # 0.5 +/- sqrt(K (log(1/alpha) + log(1 + n / (4 rho)) / 2)), rho tuned for 500 at 2 log(1/alpha).
    n, alpha = 1000, 0.05
    c = 2 * math.log(1 / alpha)
    rho = (500 / 4) / (c + math.log1p(c))
    half = math.sqrt(2 * (n / 4 + rho) / n**2 * (math.log(1 / alpha) + 0.5 * math.log1p(n / (4 * rho))))
    low, high = rate_confidence_sequence(ArmCounts(n, n // 2), alpha=alpha)
    assert low == pytest.approx(0.5 - half) and high == pytest.approx(0.5 + half)
