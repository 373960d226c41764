"""The statistics of an online rollout: is the candidate's thumbs-up rate better, worse, or not yet known?

A rollout splits live traffic between a ``production`` arm and a ``candidate`` arm and is
judged by thumbs up / down. Someone may look after every rated answer and stop as soon as
the result looks decided, so a fixed-sample test read again and again would cry wolf far
more often than its alpha. Every interval here is instead a *confidence sequence*: with
probability at least ``1 - alpha`` it holds at every sample size at once, so it may be
consulted after each rating and acted on whenever it excludes zero.

The method (Robbins' normal mixture, as in Howard et al. 2021, "Time-uniform, nonparametric,
nonasymptotic confidence sequences"): a rating ``X`` (1 = up) minus its arm's true rate ``p``
is bounded in an interval of length 1, so it is sub-Gaussian with variance factor 1/4 whatever
``p`` is. For an arm with ``n`` ratings, ``up`` of them up, ``S = up - n p`` and ``V = n / 4``,
mixing ``exp(l S - l^2 V / 2)`` over ``l ~ Normal(0, 1 / rho)`` gives the nonnegative
supermartingale ``sqrt(rho / (V + rho)) * exp(S^2 / (2 (V + rho)))``. The two arms' mixtures
multiply into one supermartingale (each rating moves only its own arm's factor, whatever the
traffic split, even one that changes during the rollout), and by Ville's inequality it ever
reaches ``1 / alpha`` with probability at most ``alpha``. The pairs of rates it has not
ruled out form an ellipse around the observed rates; projecting it onto
``p_candidate - p_production`` gives::

    difference = rate_c - rate_p  +/-  sqrt(R * (K_c + K_p))
    K = 2 (n / 4 + rho) / n^2
    R = log(1 / alpha) + log(1 + n_c / (4 rho)) / 2 + log(1 + n_p / (4 rho)) / 2

further cut by the rates' own range [0, 1] (the ellipse's shadow on each axis, clipped to
[0, 1], bounds the difference too). One arm alone (``rate_confidence_sequence``) uses the
one-dimensional form ``rate +/- sqrt(K * (log(1 / alpha) + log(1 + n / (4 rho)) / 2))``.

Why this method: it is exact, not asymptotic (no normal approximation, so it holds at
5 ratings as at 5,000, at a 5% candidate share as at 50%), it has a closed form cheap
enough to evaluate after every rating, and the single joint mixture is about a quarter
narrower than two per-arm intervals at ``alpha / 2`` each with balanced traffic (and within
5% of them at a 5% candidate share). Its price: the variance factor 1/4 is exact at a rate
of 0.5 and conservative elsewhere (at 0.8 the true variance is 0.16), which matters little
for thumbs-up rates and a lot for rare events such as error rates of a few percent
(``rate_not_worse`` is valid there but slow to detect small shifts). Johari et al.'s mSPRT
with a normal approximation is somewhat more powerful, but only asymptotically valid, and
early, unbalanced rollouts are exactly where asymptotics fail.

``rho`` sets the sample size at which the boundary is tightest. It is given in ratings per
arm (``tuned_for``, default 500) and turned into ``rho = (tuned_for / 4) / (c + log(1 + c))``
(Howard et al.'s near-optimal choice), with ``c = log(1 / alpha)`` for the difference and
``2 log(1 / alpha)`` for one arm. Rollouts see hundreds to a few thousands of ratings per
arm; in simulation 500 decided fastest at 5%, 25% and 50% candidate shares among 300, 500,
750, 1,000 and 1,500. The boundary is flat around its optimum: other values cost little,
and validity never depends on it.

What the simulation (``benchmarks/rollout_simulation.py``, pinned in
``tests/rollouts/test_stats.py``) shows at ``alpha = 0.05`` and the defaults, with the
verdict read after every single rating:

- A/A rollouts (no true difference) up to 3,000 ratings, at thumbs-up rates 0.5 and 0.8 and
  candidate shares 5%, 25% and 50%: about 1% ever end "better" or "worse" at a rate of 0.5
  and a 50% share, at most 0.5% elsewhere (the bound is 5%: the method is conservative);
- with a 10-point difference (0.60 vs 0.70) at 50/50, 90% of rollouts decide within
  2,100 ratings (both arms together; the simulated 90th percentile is about 1,900-2,000,
  the median about 1,000), and none decided the wrong way. At a 25% share the 90th
  percentile is about 2,800 ratings, at 5% about 12,500 (the candidate's ratings are the
  scarce ones);
- the error-rate guardrail with a 1-point margin never breached at 2% vs 3% errors, and
  flags 2% vs 8% after a median of about 4,900 answers at 50/50 (31,000 at a 5% share).
  Errors are counted over every answer, rated or not, so answers come far faster than
  ratings.

Intervals are recomputed from the counts at each look (no state is kept). Intersecting
each new interval with the previous ones is also valid, and a caller that keeps history
may do so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DEFAULT_MIN_RATED",
    "DEFAULT_TUNED_FOR",
    "ArmCounts",
    "Comparison",
    "GuardrailVerdict",
    "Verdict",
    "compare",
    "confidence_bounds",
    "confidence_sequence",
    "latency_p95_not_worse",
    "rate_confidence_sequence",
    "rate_not_worse",
]

Verdict = Literal["better", "worse", "no_difference_yet", "too_few"]
GuardrailVerdict = Literal["ok", "breached", "too_few"]

DEFAULT_TUNED_FOR = 500
"""Ratings per arm at which the intervals are tightest (the mixture's tuning)."""

DEFAULT_MIN_RATED = 50
"""Rated answers each arm needs before ``compare`` or ``rate_not_worse`` gives any verdict."""

DEFAULT_MIN_LATENCIES = 100
"""Latencies each arm needs before ``latency_p95_not_worse`` compares p95s (5 answers above it)."""

# An arm with no ratings constrains nothing: its ellipse axis is infinite, kept finite so
# the arithmetic stays free of inf / nan (any rate in [0, 1] is then within bounds).
_UNBOUNDED = 1e30


@dataclass(frozen=True)
class ArmCounts:
    """One arm's feedback so far: how many answers were rated, and how many got a thumbs up."""

    rated: int
    up: int

    def __post_init__(self) -> None:
        if self.rated < 0 or self.up < 0:
            raise ValueError(f"counts cannot be negative: rated={self.rated}, up={self.up}")
        if self.up > self.rated:
            raise ValueError(f"up ({self.up}) cannot exceed rated ({self.rated})")

    @property
    def rate(self) -> float:
        """The observed thumbs-up rate, ``nan`` before the first rating."""
        return self.up / self.rated if self.rated else math.nan


@dataclass(frozen=True)
class Comparison:
    """The candidate against production: estimates, always-valid intervals and the verdict.

    ``difference`` is ``candidate.rate - production.rate`` (``nan`` while an arm has no
    rating); ``low`` / ``high`` bound it. Each arm's interval is valid on its own at
    ``1 - alpha``. The verdict reads the difference's interval: ``better`` when it lies
    entirely above 0, ``worse`` entirely below, ``no_difference_yet`` otherwise, and
    ``too_few`` (whatever the interval says) while either arm has fewer than ``min_rated``
    rated answers.
    """

    production: ArmCounts
    candidate: ArmCounts
    difference: float
    low: float
    high: float
    production_interval: tuple[float, float]
    candidate_interval: tuple[float, float]
    verdict: Verdict
    alpha: float


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1 (e.g. 0.05), got {alpha!r}")


def _check_tuned_for(tuned_for: float) -> None:
    if not tuned_for > 0:
        raise ValueError(f"tuned_for must be a positive number of ratings per arm, got {tuned_for!r}")


def _mixture_rho(tuned_for: float, c: float) -> float:
    """The mixture precision that makes the boundary near-tightest at ``tuned_for`` ratings."""
    return (tuned_for / 4.0) / (c + math.log1p(c))


def _axis(rated: NDArray[np.float64], rho: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per arm: ``K`` (squared half-axis per unit of radius) and its share of the log term."""
    variance = rated / 4.0
    with np.errstate(divide="ignore"):
        k = np.where(rated > 0, 2.0 * (variance + rho) / np.maximum(rated, 1.0) ** 2, _UNBOUNDED)
    return k, 0.5 * np.log1p(variance / rho)


def _as_counts(rated: ArrayLike, up: ArrayLike, arm: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    n = np.asarray(rated, dtype=np.float64)
    k = np.asarray(up, dtype=np.float64)
    if np.any(n < 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError(f"{arm} counts must satisfy 0 <= up <= rated")
    return n, k


def confidence_bounds(
    production_rated: ArrayLike,
    production_up: ArrayLike,
    candidate_rated: ArrayLike,
    candidate_up: ArrayLike,
    *,
    alpha: float = 0.05,
    tuned_for: float = DEFAULT_TUNED_FOR,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Always-valid bounds on ``p_candidate - p_production``, over arrays of counts.

    The array form of ``confidence_sequence``: pass cumulative counts after every rating of
    a logged rollout (or of many simulated ones) and get the interval at every look at once.
    Counts broadcast against each other; an arm without ratings leaves its rate anywhere in
    [0, 1].

    Returns:
        ``(low, high)``, arrays of the broadcast shape, within [-1, 1].
    """
    _check_alpha(alpha)
    _check_tuned_for(tuned_for)
    n_p, up_p = _as_counts(production_rated, production_up, "production")
    n_c, up_c = _as_counts(candidate_rated, candidate_up, "candidate")
    rho = _mixture_rho(tuned_for, math.log(1.0 / alpha))
    k_p, log_p = _axis(n_p, rho)
    k_c, log_c = _axis(n_c, rho)
    radius = math.log(1.0 / alpha) + log_p + log_c
    # An arm without ratings has no rate; its centre is arbitrary since its axis is unbounded.
    rate_p = np.where(n_p > 0, up_p / np.maximum(n_p, 1.0), 0.5)
    rate_c = np.where(n_c > 0, up_c / np.maximum(n_c, 1.0), 0.5)
    half = np.sqrt(radius * (k_p + k_c))
    # The ellipse's shadow on each rate's axis, clipped to [0, 1], also bounds the difference.
    reach_p = np.sqrt(radius * k_p)
    reach_c = np.sqrt(radius * k_c)
    box_low = np.maximum(rate_c - reach_c, 0.0) - np.minimum(rate_p + reach_p, 1.0)
    box_high = np.minimum(rate_c + reach_c, 1.0) - np.maximum(rate_p - reach_p, 0.0)
    low = np.maximum(rate_c - rate_p - half, box_low)
    high = np.minimum(rate_c - rate_p + half, box_high)
    return low, high


def confidence_sequence(
    production: ArmCounts,
    candidate: ArmCounts,
    *,
    alpha: float = 0.05,
    tuned_for: float = DEFAULT_TUNED_FOR,
) -> tuple[float, float]:
    """An always-valid ``1 - alpha`` interval for ``p_candidate - p_production``.

    Valid at every sample size at once, with any (even changing) traffic split: it may be
    recomputed after every rating and acted on the first time it excludes zero.
    """
    low, high = confidence_bounds(
        production.rated, production.up, candidate.rated, candidate.up, alpha=alpha, tuned_for=tuned_for
    )
    return float(low), float(high)


def rate_confidence_sequence(
    arm: ArmCounts, *, alpha: float = 0.05, tuned_for: float = DEFAULT_TUNED_FOR
) -> tuple[float, float]:
    """An always-valid ``1 - alpha`` interval for one arm's thumbs-up rate, within [0, 1]."""
    _check_alpha(alpha)
    _check_tuned_for(tuned_for)
    if arm.rated == 0:
        return 0.0, 1.0
    rho = _mixture_rho(tuned_for, 2.0 * math.log(1.0 / alpha))
    k, log_term = _axis(np.asarray(float(arm.rated)), rho)
    half = float(np.sqrt(k * (math.log(1.0 / alpha) + log_term)))
    return max(arm.rate - half, 0.0), min(arm.rate + half, 1.0)


def _check_min(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name} cannot be negative, got {value!r}")


def compare(
    production: ArmCounts,
    candidate: ArmCounts,
    *,
    alpha: float = 0.05,
    min_rated: int = DEFAULT_MIN_RATED,
    tuned_for: float = DEFAULT_TUNED_FOR,
) -> Comparison:
    """Compare the candidate's thumbs-up rate with production's, safe to call after every rating.

    Args:
        production: the production arm's counts.
        candidate: the candidate arm's counts.
        alpha: the chance, over the whole rollout however often it is consulted, of a
            ``better`` or ``worse`` verdict when the rates are in truth equal.
        min_rated: rated answers each arm needs before any verdict other than ``too_few``.
        tuned_for: ratings per arm at which the intervals are tightest (see the module doc).
    """
    _check_min("min_rated", min_rated)
    low, high = confidence_sequence(production, candidate, alpha=alpha, tuned_for=tuned_for)
    verdict: Verdict
    if min(production.rated, candidate.rated) < min_rated:
        verdict = "too_few"
    elif low > 0.0:
        verdict = "better"
    elif high < 0.0:
        verdict = "worse"
    else:
        verdict = "no_difference_yet"
    return Comparison(
        production=production,
        candidate=candidate,
        difference=candidate.rate - production.rate,
        low=low,
        high=high,
        production_interval=rate_confidence_sequence(production, alpha=alpha, tuned_for=tuned_for),
        candidate_interval=rate_confidence_sequence(candidate, alpha=alpha, tuned_for=tuned_for),
        verdict=verdict,
        alpha=alpha,
    )


def rate_not_worse(
    production_errors: int,
    production_total: int,
    candidate_errors: int,
    candidate_total: int,
    *,
    margin: float,
    alpha: float = 0.05,
    min_total: int = DEFAULT_MIN_RATED,
    tuned_for: float = DEFAULT_TUNED_FOR,
) -> GuardrailVerdict:
    """A guardrail on a rate where lower is better (errors, timeouts, answers slower than an SLO).

    ``breached`` once the candidate's rate is, always-validly at ``1 - alpha``, more than
    ``margin`` above production's (the lower bound of ``p_candidate - p_production`` exceeds
    ``margin``); if it is in truth at most ``margin`` above, that happens with probability at
    most ``alpha`` however often the guardrail is checked. ``ok`` means no such evidence
    (yet), not proof of non-inferiority. ``too_few`` while either arm has fewer than
    ``min_total`` answers. The bound assumes the worst-case variance (see the module doc), so
    for rare errors it detects only clear breaches quickly.
    """
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin is a difference of rates in [0, 1), got {margin!r}")
    _check_min("min_total", min_total)
    for arm, errors, total in (("production", production_errors, production_total),
                               ("candidate", candidate_errors, candidate_total)):
        if not 0 <= errors <= total:
            raise ValueError(f"{arm} counts must satisfy 0 <= errors <= total, got {errors} of {total}")
    production = ArmCounts(production_total, production_errors)
    candidate = ArmCounts(candidate_total, candidate_errors)
    low, _ = confidence_sequence(production, candidate, alpha=alpha, tuned_for=tuned_for)
    if min(production_total, candidate_total) < min_total:
        return "too_few"
    return "breached" if low > margin else "ok"


def latency_p95_not_worse(
    production_latencies: ArrayLike,
    candidate_latencies: ArrayLike,
    *,
    margin_ratio: float = 0.1,
    min_count: int = DEFAULT_MIN_LATENCIES,
) -> GuardrailVerdict:
    """Latency guardrail: ``breached`` when candidate p95 > production p95 * (1 + ``margin_ratio``).

    A plain comparison of the two empirical 95th percentiles once each arm has ``min_count``
    latencies, ``too_few`` before. It is NOT a sequential test: checked after every request
    it will sometimes flag noise. For an always-valid latency guardrail, count the answers
    slower than a fixed threshold (an SLO) and give those counts to ``rate_not_worse``.
    """
    if margin_ratio < 0:
        raise ValueError(f"margin_ratio cannot be negative, got {margin_ratio!r}")
    _check_min("min_count", min_count)
    production = np.asarray(production_latencies, dtype=np.float64).ravel()
    candidate = np.asarray(candidate_latencies, dtype=np.float64).ravel()
    if not (np.all(np.isfinite(production)) and np.all(np.isfinite(candidate))):
        raise ValueError("latencies must be finite numbers")
    if min(production.size, candidate.size) < max(min_count, 1):
        return "too_few"
    limit = float(np.quantile(production, 0.95)) * (1.0 + margin_ratio)
    return "breached" if float(np.quantile(candidate, 0.95)) > limit else "ok"
