"""Prompt optimization from feedback: model calls, wall time and held-out gain per optimizer.

The demo's data and setting: SmolLM2-135M served by vLLM behind the gateway (``llmops
serve``), the docs chain @production, simulated users asking the first --users golden
questions through the gateway and rating each answer (thumbs up when it holds the reference
fact, else thumbs down with the reference answer as a correction). Then each optimizer runs
at --budget (default 8, the CLI's) through the served model, its search scored on the
paraphrases of the questions rated good, and every registered version is compared with the
base prompt on the paraphrases of the corrected questions (numbers no search chose on):
token F1 and fact hit, with the optimizer's model calls and wall time. GEPA's reflection
model is the same served SmolLM2 (the point: does a 135M model rewrite a prompt usefully?).

  python benchmarks/prompt_optimization.py [--budget 8] [--users 12] [--optimizers fewshot,gepa]
      [--workdir DIR] [--json-out FILE]

Needs the serve, index and local extras (vLLM's CPU build runs here); about 10-20 min on 2
CPU cores, most of it the engine's start and the users' questions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import REPO, parser, timed, write_json  # noqa: E402


def _project(work: Path) -> Path:
    for folder in ("prompts", "chains", "docs", "evals", "serving", "finetune"):
        shutil.copytree(REPO / folder, work / folder, dirs_exist_ok=True)
    shutil.copy(REPO / "llmops.yaml", work / "llmops.yaml")
    (work / ".gitignore").write_text(".llmops/\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=work, check=True)
    subprocess.run([*git, "add", "-A"], cwd=work, check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], cwd=work, check=True)
    return work


def _scores(answers: list[str], rows: list[dict]) -> tuple[float, float]:
    from llmops.evals.scorers import fact_hit, token_f1

    n = max(len(rows), 1)
    return (sum(token_f1(a, r["expected"]) for a, r in zip(answers, rows, strict=True)) / n,
            sum(fact_hit(a, r["fact"]) for a, r in zip(answers, rows, strict=True)) / n)


def main() -> None:
    p = parser(__doc__, json_out=True, workdir=True)
    p.add_argument("--budget", type=int, default=8)
    p.add_argument("--users", type=int, default=12)
    p.add_argument("--optimizers", default="fewshot,gepa")
    args = p.parse_args()

    import httpx

    from llmops.chains import log_chain
    from llmops.config import load_settings
    from llmops.demo.prompt_path import _paraphrases_of
    from llmops.demo.serving import serving, wait_for_rows
    from llmops.demo.users import ask_and_judge
    from llmops.indexing import update_index
    from llmops.optimize import OptimizeConfig, optimize_prompt, score_on
    from llmops.prompts import get_version, set_alias, sync_prompts, to_template

    work = _project(Path(args.workdir or tempfile.mkdtemp(prefix="llmops-bench-optimize-")))
    settings = load_settings(root=work)
    sync_prompts(settings)
    set_alias("qa", "production", 1, settings)
    update_index(settings, progress=False)
    log_chain(work / "chains" / "docs_qa.py", alias="production", settings=settings)
    golden = [json.loads(x) for x in (work / "evals" / "golden.jsonl").read_text().splitlines()
              if x][:args.users]
    results: dict[str, dict] = {}
    with serving(settings, lambda _line: None) as endpoint:  # the demo's engine, as served
        url = endpoint.wait_ready()
        with httpx.Client(base_url=url, timeout=300) as http:
            verdicts = [ask_and_judge(http, "docs-qa", row, f"bench-user-{i}")
                        for i, row in enumerate(golden)]
        wait_for_rows(settings, "feedback", len(verdicts))
        good = [v.row for v in verdicts if v.good]
        corrected = [v.row for v in verdicts if not v.good]
        selection = _paraphrases_of(settings, good)
        if len(selection) < 3:
            selection = _paraphrases_of(settings, good + corrected)
        report = _paraphrases_of(settings, corrected)
        held = work / "selection.jsonl"
        held.write_text("".join(json.dumps(r) + "\n" for r in selection))
        print(f"feedback: {len(good)} up, {len(corrected)} corrected; search on {len(selection)} "
              f"paraphrases, report on {len(report)}")
        base = to_template(get_version("qa/1", settings))
        (base_answers,), _ = timed(lambda: list(score_on(
            settings, {"base": base}, {"base": "base"}, report, url + "/v1").values()))
        results["base prompt"] = {"report": _scores(base_answers, report)}
        for optimizer in [o for o in args.optimizers.split(",") if o]:
            config = OptimizeConfig(optimizer=optimizer, budget=args.budget,
                                    endpoint=url + "/v1", heldout=str(held))
            found, seconds = timed(lambda config=config: optimize_prompt(
                "qa", settings, config, base_ref="qa/1"))
            row = {"seconds": seconds, "model_calls": found.model_calls,
                   "candidates": found.candidates, "search_base": found.base_score,
                   "search_best": found.best_score, "registered": found.registered_version}
            if found.registered_version is not None:
                tpl = to_template(get_version(f"qa/{found.registered_version}", settings))
                (answers,) = score_on(settings, {"o": tpl}, {"base": "base"}, report,
                                      url + "/v1").values()
                row["report"] = _scores(answers, report)
            else:
                row["report"] = results["base prompt"]["report"]  # the base stays
            results[optimizer] = row
    base_f1, base_hit = results["base prompt"]["report"]
    print(f"\n{'':<12} {'calls':>6} {'wall s':>7} {'search F1':>17} {'held-out F1':>12} "
          f"{'gain':>7} {'fact hit':>9}")
    print(f"{'base prompt':<12} {'':>6} {'':>7} {'':>17} {base_f1:>12.3f} {'':>7} "
          f"{base_hit:>9.3f}")
    for name, row in results.items():
        if name == "base prompt":
            continue
        f1, hit = row["report"]
        search = f"{row['search_base']:.3f} -> {row['search_best']:.3f}"
        print(f"{name:<12} {row['model_calls']:>6} {row['seconds']:>7.0f} {search:>17} "
              f"{f1:>12.3f} {f1 - base_f1:>+7.3f} {hit:>9.3f}"
              + ("" if row["registered"] else "   (nothing registered)"))
    write_json(args.json_out, results)


if __name__ == "__main__":
    main()
