"""The demo's prompt path: the feedback improves a prompt, without training, beside the adapter.

The same feedback the adapter learned from goes to ``optimize_prompt`` (the ``fewshot``
optimizer: examples users corrected or rated good, retrieved per question). Its search
scores candidates on the paraphrases of the questions users rated good; the comparison is
made on the paraphrases of the questions they corrected (the adapter's held-out set), so no
number shown is one the search chose on. A chain serving the new version then goes through
the gate against production, as any candidate does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmops.config import Settings

__all__ = ["optimize_from_feedback", "table_lines"]

OPTIMIZE_BUDGET = 4


def _paraphrases_of(settings: Settings, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    path = settings.root / "evals" / "paraphrases.jsonl"
    if not path.is_file():
        return []
    ids = {row["id"] for row in rows}
    return [r for r in (json.loads(line) for line in path.read_text(encoding="utf-8")
                        .splitlines() if line.strip()) if r.get("of") in ids]


def optimize_from_feedback(settings: Settings, url: str, verdicts: list[Any], served_adapter: str,
                           data_dir: Path, echo: Any) -> dict[str, Any]:
    """Optimize ``qa`` on the feedback; its, the base's and the adapter's held-out scores."""
    from llmops.evals.scorers import fact_hit, token_f1
    from llmops.optimize import OptimizeConfig, optimize_prompt, score_on
    from llmops.prompts import get_version, to_template

    good = [v.row for v in verdicts if v.good]
    corrected = [v.row for v in verdicts if not v.good]
    selection = _paraphrases_of(settings, good)
    report = _paraphrases_of(settings, corrected)
    note = "the paraphrases of the questions rated good"
    if len(selection) < 3:  # too few rated good: score on every asked question's paraphrase
        selection = _paraphrases_of(settings, good + corrected)
        note = "the paraphrases of every question asked (too few rated good)"
    path = data_dir / "optimize-heldout.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in selection), encoding="utf-8")
    result = optimize_prompt("qa", settings, OptimizeConfig(
        budget=OPTIMIZE_BUDGET, endpoint=url + "/v1", model="base", heldout=str(path)))
    echo(f"      searched on {note} ({len(selection)}): token F1 base prompt "
         f"{result.base_score:.3f} -> best {result.best_score:.3f} ({result.candidates} "
         f"candidates, {result.model_calls} model calls, {result.seconds:.0f} s)")
    out: dict[str, Any] = {"optimized": result, "table": {}}
    if result.registered_version is None or not report:
        return out
    base = to_template(get_version(f"qa/{result.base_version}", settings))
    optimized = to_template(get_version(f"qa/{result.registered_version}", settings))
    answers = score_on(settings, {"base": base, "optimized": optimized},
                       {"base": "base", "adapter": served_adapter}, report, url + "/v1")
    for key, got in answers.items():
        f1 = sum(token_f1(a, r["expected"]) for a, r in zip(got, report, strict=True))
        hit = sum(fact_hit(a, r["fact"]) for a, r in zip(got, report, strict=True))
        out["table"][key] = (f1 / len(report), hit / len(report))
    return out


def table_lines(table: dict[tuple[str, str], tuple[float, float]], base: str, optimized: str,
                adapter: str, rows: int) -> list[str]:
    labels = {("base", "base"): f"base prompt {base}",
              ("optimized", "base"): f"optimized prompt {optimized}",
              ("base", "adapter"): f"adapter {adapter} (base prompt)",
              ("optimized", "adapter"): f"both ({optimized} + {adapter})"}
    lines = [f"      held-out paraphrases of the corrected questions ({rows}): token F1, fact hit"]
    for key, label in labels.items():
        if key in table:
            f1, hit = table[key]
            lines.append(f"        {label:<44} {f1:.3f}  {hit:.3f}")
    return lines
