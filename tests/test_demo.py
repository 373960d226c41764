"""`llmops demo`: the main job, end to end on SmolLM2-135M-Instruct, in a fresh process.

It runs on the demo's ``quick`` profile: every step, on less data (the gates ask the 12
golden questions the simulated users ask, a three-epoch fine-tune that does not score its own
training rows, a canary on the corrected questions that decides on fewer ratings), in a
project whose docs are already embedded (its index step finds them unchanged); ``make
demo`` runs the full profile on a fresh project.

The one slow test that runs the real model through the whole loop, so it is
where the loop's quality claims are checked against what the demo stored:
retrieval helps, the gate rejects the closed-book candidate, fine-tuning on
corrections helps on held-out paraphrases, the served adapter answers
differently from the base, the users' canary promotes the adapter's chain on their
ratings (through the gateway's own judging), and the printed figures are the stored ones.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli


def _golden() -> dict[str, dict]:
    rows = [json.loads(x) for x in (REPO / "evals" / "golden.jsonl").read_text().splitlines() if x]
    return {r["question"]: r for r in rows}


@pytest.mark.slow
@pytest.mark.timeout(3000)  # ~5 min inside the suite on 2 cores; more when the machine is busy
def test_demo_runs_the_whole_loop_on_smollm2(project: Path, smollm2_dir: Path,
                                             models_dir: Path, docs_indexed: Path) -> None:
    # The docs are already embedded (the session's ``docs_index``, built by a real ``llmops
    # index update``): step 3 runs the index job, finds every chunk unchanged and embeds
    # nothing, which saves about 20 s of the suite's one test that runs alone.
    for folder in ("serving", "evals", "finetune"):
        shutil.copytree(REPO / folder, project / folder)
    app = (REPO / "llmops.yaml").read_text()
    (project / "llmops.yaml").write_text(app + f"models_dir: {models_dir}\n")
    out = run_cli("demo", "--profile", "quick", cwd=project, timeout=2700)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    text = out.stdout
    print(text)  # the steps' times, in the report of a passed run with -rP (make test)
    for step in range(1, 13):
        assert re.search(rf"^\[{step}/12\] .* \(\d+ s\)$", text, re.M), f"step {step} line"
    assert f"base model: smollm2 ({smollm2_dir})" in text
    # the index job ran on the embedded docs: every chunk found unchanged, none embedded again
    indexed = re.search(r"^\[3/12\] index 'docs': added 0, updated 0, deleted 0, unchanged "
                        r"(\d+) chunks", text, re.M)
    assert indexed, re.findall(r"^\[3/12\].*$", text, re.M)
    from llmops.config import load_settings
    from llmops.indexing.store import open_collection

    docs = open_collection(load_settings(root=project), "docs", create=False)
    assert int(indexed.group(1)) == docs.count()
    # written for a person: no library log lines, warnings or loading bars
    for noise in (" INFO ", "WARNING", "Warning:", "Loading weights", "it/s]"):
        assert noise not in text and noise not in out.stderr, noise
    # the gates' evaluations take the fast path: each dataset's per-example table is in MLflow
    tables = re.findall(r"per-example table \(golden\): (\S+)", text)
    assert tables and all(Path(t.removeprefix("file://")).is_file() for t in tables)
    assert "mlflow ui --backend-store-uri sqlite:///" in text and "llmops --env dev serve" in text
    assert text.rstrip().endswith("demo finished")

    from mlflow import MlflowClient

    from llmops.evals.scorers import fact_hit
    from llmops.lakehouse import read_table
    from llmops.rollouts import RolloutSpec

    lake = project / ".llmops" / "dev" / "lakehouse"
    uri = f"sqlite:///{project / '.llmops' / 'dev' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    status = {v: client.get_model_version("docs-qa", v).tags.get("llmops.gate.status")
              for v in ("1", "2", "3", "4", "5")}
    results = read_table(lake, "eval_results")

    def golden(model_uri: str, metric: str) -> float:
        rows = results[(results["model_uri"] == model_uri) & (results["dataset"] == "golden")
                       & (results["metric"] == metric) & results["example_id"].isna()]
        return float(rows["value"].iloc[-1])

    # retrieval measurably helps: the closed-book candidate scores lower and the gate rejects it
    assert status["1"] == "passed" and status["2"] == "rejected", re.findall(r"^      - .*$",
                                                                             text, re.M)
    with_rag, closed = "models:/docs-qa/1", "models:/docs-qa/2"
    # the quick profile: the gates asked the 12 golden questions the users ask, not all 30
    asked = results[(results["model_uri"] == with_rag) & (results["dataset"] == "golden")
                    & results["example_id"].notna()]
    assert asked["example_id"].nunique() == 12
    assert golden(with_rag, "fact_hit") > golden(closed, "fact_hit")
    assert golden(with_rag, "token_f1") > golden(closed, "token_f1")
    assert client.get_model_version("docs-qa", "2").tags["llmops.rejected"]
    assert (f"golden set with retrieval:    token F1 {golden(with_rag, 'token_f1'):.3f}, "
            f"fact hit {golden(with_rag, 'fact_hit'):.3f}") in text
    # an equal candidate (the same chain logged again) scores the same and is promoted
    assert status["3"] == "passed", re.findall(r"^      - .*$", text, re.M)
    for metric in ("token_f1", "fact_hit", "source_hit"):
        assert golden("models:/docs-qa/3", metric) == golden(with_rag, metric)
    assert "the same chain logged again as docs-qa/3: passed, now @production" in text
    # the gate ran where it applies only: no source_hit on the feedback set
    feedback_metrics = set(results[results["dataset"] == "feedback"]["metric"])
    assert "source_hit" not in feedback_metrics and "fact_hit" not in feedback_metrics

    # simulated users: thumbs up exactly when the answer holds the reference fact
    log = read_table(lake, "inference_log")
    chain_rows = log[(log["endpoint"] == "/v1/chains/docs-qa/invoke")
                     & log["end_user"].str.startswith("demo-user-", na=False)]
    assert len(chain_rows) == 12
    all_feedback = read_table(lake, "feedback")
    feedback = all_feedback[all_feedback["source"] == "demo"].merge(chain_rows, on="request_id")
    assert len(feedback) == 12
    by_question = _golden()
    for _, row in feedback.iterrows():
        question = json.loads(row["request"])["question"]
        answer = row["response"]  # a chain's row holds its answer text
        assert (row["rating"] == 1) == bool(fact_hit(answer, by_question[question]["fact"]))
    ups = int((feedback["rating"] == 1).sum())
    assert f"{ups} up, {12 - ups} down with corrections" in text
    assert 0 < ups < 12

    # fine-tuning on the corrections helps on held-out paraphrases of the corrected questions
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              "tags.`llmops.kind` = 'finetune'")
    assert len(runs) == 1
    metrics = runs[0].data.metrics
    assert metrics["eval_rows"] == 12 - ups
    assert metrics["eval_adapter_token_f1"] > metrics["eval_base_token_f1"]
    assert (f"token F1 base {metrics['eval_base_token_f1']:.3f} -> adapter "
            f"{metrics['eval_adapter_token_f1']:.3f}") in text

    # the served adapter answers a corrected question differently from the base (greedy)
    chats = log[log["endpoint"] == "/v1/chat/completions"]
    corrected = {json.loads(r)["question"] for r in feedback[feedback["rating"] == -1]["request"]}
    asked: dict[str, dict[str, str]] = {}
    for _, row in chats.iterrows():
        messages = json.loads(row["request"]).get("messages") or []
        if len(messages) == 1 and messages[0]["content"] in corrected:
            asked.setdefault(messages[0]["content"], {})[row["model"]] = row["response"]
    assert len(asked) == 1
    (replies,) = asked.values()
    assert set(replies) == {"base", "docs-qa-lora-v1"}
    assert replies["base"] != replies["docs-qa-lora-v1"]

    # the prompt optimized from the same feedback (no training): a new version of qa with its
    # lineage, no alias moved, better than the base prompt on the held-out paraphrases of the
    # corrected questions (the search scored on the paraphrases of the questions rated good)
    qa2 = client.get_prompt_version("qa", 2)
    assert qa2.tags["llmops.optimizer"] == "fewshot" and qa2.tags["llmops.optimized_from"] == "qa/1"
    assert client.get_prompt_version_by_alias("qa", "production").version == 1
    table = {m.group(1): (float(m.group(2)), float(m.group(3))) for m in re.finditer(
        r"^        (base prompt|optimized prompt|adapter|both) .*? (\d\.\d{3})  (\d\.\d{3})$",
        text, re.M)}
    assert set(table) == {"base prompt", "optimized prompt", "adapter", "both"}, table
    assert table["optimized prompt"][0] > table["base prompt"][0]
    # a chain serving it went through the gate against production (not promoted)
    assert client.get_model_version("docs-qa", "4").tags["llmops.prompt"] == "qa/2"
    printed = re.search(r"^\[10/12\] prompt: qa/2 .* docs-qa/4 serving it vs production 3: "
                        r"(passed|rejected)", text, re.M)
    assert printed and status["4"] == printed.group(1)
    assert client.get_model_version("docs-qa", "4").tags["llmops.gate.promoted"] == "false"

    # the adapter's chain passed the gate and stayed @staging for the canary
    assert client.get_model_version("docs-qa", "5").tags["llmops.adapter"] == "docs-qa-lora/1"
    printed = re.search(r"^\[11/12\] gate: docs-qa/5 .* vs production 3: (passed|rejected)",
                        text, re.M)
    assert printed and status["5"] == printed.group(1) == "passed"
    assert client.get_model_version("docs-qa", "5").tags["llmops.gate.promoted"] == "false"

    # the canary: the gateway split the simulated users' traffic, judged it on their ratings,
    # advanced a step, then promoted the adapter's chain, which users rate up more often
    rollouts = read_table(lake, "rollouts").sort_values("ts", kind="stable")
    assert set(rollouts["candidate"]) == {"5"} and set(rollouts["production"]) == {"3"}
    decisions = [d for d in rollouts["decision"] if d != "continue"]
    assert decisions == ["start", "advance", "promote"], decisions
    assert set(rollouts[rollouts["decision"] != "start"]["by"]) == {"gateway"}
    final = rollouts.iloc[-1]
    assert final["status"] == "promoted"
    assert final["diff_low"] > 0
    assert final["cand_up"] / final["cand_rated"] > final["prod_up"] / final["prod_rated"]
    # the quick profile's spec (the demo's own, a smaller one: llmops.demo.canary)
    spec = RolloutSpec.model_validate_json(final["spec"])
    assert spec.steps == [30, 50, 100] and spec.min_rated == 12
    assert final["cand_rated"] >= spec.min_rated and final["prod_rated"] >= spec.min_rated
    production = str(client.get_model_version_by_alias("docs-qa", "production").version)
    assert production == "5"
    assert client.get_model_version("docs-qa", "5").tags["llmops.rollout.evidence"]
    canary = log[log["end_user"].str.startswith("canary-user-", na=False)]
    # the quick profile's canary users ask the corrected questions only
    assert {json.loads(r)["question"] for r in canary["request"]} <= corrected
    routed = canary[canary["rollout_id"] == final["rollout_id"]]
    assert set(routed["rollout_arm"]) == {"production", "candidate"}
    assert set(routed[routed["rollout_arm"] == "candidate"]["chain_version"]) == {"5"}
    assert set(routed[routed["rollout_arm"] == "production"]["chain_version"]) == {"3"}
    rated = all_feedback[all_feedback["source"] == "demo-canary"].merge(routed, on="request_id")
    arms = {}
    for arm in ("candidate", "production"):
        mine = rated[rated["rollout_arm"] == arm]
        for _, row in mine.iterrows():
            question = json.loads(row["request"])["question"]
            assert (row["rating"] == 1) == bool(fact_hit(row["response"],
                                                         by_question[question]["fact"]))
        arms[arm] = f"{int((mine['rating'] == 1).sum())}/{len(mine)} up"
    assert re.search(rf"^\[12/12\] canary: docs-qa/5 vs production 3 on \d+ simulated users: "
                     rf"promoted \(thumbs: candidate {arms['candidate']}, production "
                     rf"{arms['production']}\)", text, re.M), arms
    assert "the gateway decided: promote (users like it better" in text

    # monitoring reports the real thumbs-up rate
    assert f"thumbs-up rate {ups / 12:.2f}" in text
    monitored = read_table(lake, "monitoring")
    overall = monitored[monitored["group"] == "all"]
    shown = re.search(r"monitor: (\d+) requests, thumbs-up rate", text)
    assert shown and monitored["run_id"].nunique() == 1 and len(overall) == 1
    assert int(overall["requests"].iloc[0]) == int(shown.group(1))
    assert overall["thumbs_up_rate"].iloc[0] == pytest.approx(ups / 12)
    assert len(read_table(lake, "index_runs")) == 1
