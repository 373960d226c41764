"""How the rollout statistics behave when read after every rating: false decisions and power.

Simulates rollouts rating by rating, each rating sent to the candidate with probability
``share``, and applies ``llmops.rollouts.compare``'s rule after every rating (a verdict
once both arms have ``DEFAULT_MIN_RATED`` ratings and the always-valid interval excludes
zero). Runs are vectorised: one row per rollout, cumulative counts along it.

- A/A (no true difference), up to 3,000 ratings: the share of rollouts that ever say
  "better" or "worse" (the method promises at most alpha);
- a 10-point difference (0.60 vs 0.70, both directions): the share deciding correctly
  within the horizon, the median and 90th-percentile number of ratings (both arms together)
  to that decision, and the share ever deciding the wrong way;
- the error-rate guardrail (``rate_not_worse``, margin 1 point): false breaches when the
  candidate is exactly at the margin (2% vs 3%), and ratings to a breach at 2% vs 8%.

Usage: python benchmarks/rollout_simulation.py [--runs 1000] [--seed 0] [--alpha 0.05]
"""

from __future__ import annotations

import time

import numpy as np
from _harness import parser

from llmops.rollouts import DEFAULT_MIN_RATED, DEFAULT_TUNED_FOR, confidence_bounds

AA_HORIZON = 3000
BASE_RATES = (0.5, 0.8)
SHARES = (0.05, 0.25, 0.5)
# Long enough for (nearly) every rollout to decide at each share.
POWER_HORIZONS = {0.5: 5000, 0.25: 8000, 0.05: 40000}
GUARDRAIL_HORIZONS = {0.5: 10000, 0.05: 60000}


def first_decisions(
    rng: np.random.Generator,
    p_production: float,
    p_candidate: float,
    share: float,
    *,
    runs: int,
    horizon: int,
    alpha: float,
    margin: float = 0.0,
    chunk: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Per run, the rating count at its first "better" / "worse" verdict (0: never within ``horizon``)."""
    better = np.zeros(runs, dtype=np.int64)
    worse = np.zeros(runs, dtype=np.int64)
    for start in range(0, runs, chunk):
        rows = min(chunk, runs - start)
        to_candidate = rng.random((rows, horizon)) < share
        draw = rng.random((rows, horizon))
        up = np.where(to_candidate, draw < p_candidate, draw < p_production)
        candidate_rated = np.cumsum(to_candidate, axis=1, dtype=np.int32)
        production_rated = np.arange(1, horizon + 1, dtype=np.int32) - candidate_rated
        candidate_up = np.cumsum(up & to_candidate, axis=1, dtype=np.int32)
        production_up = np.cumsum(up & ~to_candidate, axis=1, dtype=np.int32)
        low, high = confidence_bounds(
            production_rated, production_up, candidate_rated, candidate_up, alpha=alpha
        )
        enough = np.minimum(production_rated, candidate_rated) >= DEFAULT_MIN_RATED
        for decided, out in ((enough & (low > margin), better), (enough & (high < -margin), worse)):
            out[start:start + rows] = np.where(decided.any(axis=1), decided.argmax(axis=1) + 1, 0)
    return better, worse


def ratings_to_decision(first: np.ndarray, horizon: int) -> tuple[str, str]:
    """Median and 90th percentile of ratings to the decision; ``>horizon`` where too few decided."""
    never = horizon + 1
    filled = np.where(first > 0, first, never)
    out = []
    for q in (0.5, 0.9):
        value = float(np.quantile(filled, q, method="higher"))
        out.append(f">{horizon}" if value >= never else f"{value:.0f}")
    return out[0], out[1]


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--runs", type=int, default=1000, help="simulated rollouts per scenario")
    p.add_argument("--seed", type=int, default=0, help="seed of the random generator")
    p.add_argument("--alpha", type=float, default=0.05, help="the tests' alpha")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    began = time.perf_counter()
    common = {"runs": args.runs, "alpha": args.alpha}
    print(f"alpha {args.alpha}, {args.runs} runs per row, min_rated {DEFAULT_MIN_RATED}, "
          f"tuned_for {DEFAULT_TUNED_FOR}, verdict read after every rating, seed {args.seed}")

    print(f"\nA/A: share of rollouts ever deciding within {AA_HORIZON} ratings (bound: {args.alpha})")
    print(f"{'rate':>6} {'share':>6} {'false decisions':>16}")
    for rate in BASE_RATES:
        for share in SHARES:
            better, worse = first_decisions(rng, rate, rate, share, horizon=AA_HORIZON, **common)
            print(f"{rate:>6.2f} {share:>6.2f} {np.mean((better > 0) | (worse > 0)):>16.3f}")

    print("\n10-point difference: ratings (both arms) to the right verdict")
    print(f"{'prod':>5} {'cand':>5} {'share':>6} {'horizon':>8} {'power':>6} {'median':>7} "
          f"{'p90':>7} {'wrong':>6}")
    for share, horizon in POWER_HORIZONS.items():
        for production, candidate in ((0.60, 0.70), (0.70, 0.60)):
            better, worse = first_decisions(
                rng, production, candidate, share, horizon=horizon, **common
            )
            right, wrong = (better, worse) if candidate > production else (worse, better)
            median, p90 = ratings_to_decision(right, horizon)
            print(f"{production:>5.2f} {candidate:>5.2f} {share:>6.2f} {horizon:>8} "
                  f"{np.mean(right > 0):>6.3f} {median:>7} {p90:>7} {np.mean(wrong > 0):>6.3f}")

    print("\nError-rate guardrail, margin 0.01: share breached, answers (both arms) to a breach")
    print(f"{'prod':>5} {'cand':>5} {'share':>6} {'horizon':>8} {'breached':>9} {'median':>7} {'p90':>7}")
    for production, candidate in ((0.02, 0.03), (0.02, 0.08)):
        for share in (0.05, 0.5):
            horizon = AA_HORIZON if candidate - production <= 0.01 else GUARDRAIL_HORIZONS[share]
            breached, _ = first_decisions(
                rng, production, candidate, share, horizon=horizon, margin=0.01, **common
            )
            median, p90 = ratings_to_decision(breached, horizon)
            print(f"{production:>5.2f} {candidate:>5.2f} {share:>6.2f} {horizon:>8} "
                  f"{np.mean(breached > 0):>9.3f} {median:>7} {p90:>7}")
    print(f"\n{time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
