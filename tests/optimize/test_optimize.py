"""``llmops prompts optimize``: a better prompt version from feedback, registered with its
lineage and no alias moved; bad input registers nothing.

The quality test runs SmolLM2-135M (the default model) in process: what is tested is that
the search finds a version that answers held-out paraphrases of corrected questions better.
The error cases use the tiny model (they stop before any model call or after a few).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops.errors import LlmopsError, PromptVariableError
from tests.conftest import REPO, run_cli
from tests.optimize.conftest import collect_feedback, golden


def _versions(name: str) -> list[int]:
    from mlflow import MlflowClient

    return sorted(int(v.version) for v in MlflowClient().search_prompt_versions(name))


def _paraphrases(rows: list[dict], out: Path) -> Path:
    ids = {r["id"] for r in rows}
    para = [json.loads(line) for line in
            (REPO / "evals" / "paraphrases.jsonl").read_text().splitlines()]
    out.write_text("".join(json.dumps(p) + "\n" for p in para if p["of"] in ids))
    return out


def test_optimize_registers_a_better_version_with_its_lineage(
        project: Path, qa_registered, smollm2_dir: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from llmops.chains import log_chain
    from llmops.chains.demonstrations import DEMONSTRATIONS_KEY
    from llmops.config import load_settings
    from llmops.optimize import OptimizeConfig, optimize_prompt
    from llmops.prompts import get_version, sync_prompts

    (project / "llmops.yaml").write_text((project / "llmops.yaml").read_text().replace(
        "model: tiny", "model: smollm2").replace("max_tokens: 8", "max_tokens: 32"))
    settings = load_settings(root=project)
    rows = golden(8)
    collect_feedback(settings, rows)  # 4 corrected, 4 rated good
    corrected = [r for i, r in enumerate(rows) if i % 2 == 1]
    heldout = _paraphrases(corrected[:3], tmp_path / "heldout.jsonl")
    result = optimize_prompt("qa", settings, OptimizeConfig(budget=1, heldout=str(heldout)))

    # the base answers the paraphrases worse than the version that shows the corrections
    assert result.best_score > result.base_score, (result.base_score, result.tried)
    assert result.registered_version == 2 and _versions("qa") == [1, 2]
    assert result.model_calls == 2 * 3 and result.heldout_rows == 3 and result.train_rows == 8
    version = get_version("qa/2", settings)
    tags = version.tags
    assert tags["llmops.optimizer"] == "fewshot" and tags["llmops.budget"] == "1"
    assert tags["llmops.optimized_from"] == "qa/1"
    assert tags["llmops.feedback_table_version"] == str(result.feedback_version)
    assert float(tags["llmops.heldout_token_f1.optimized"]) == pytest.approx(
        result.best_score, abs=1e-4)
    run = MlflowClient().get_run(tags["llmops.optimize_run"])
    assert run.data.metrics["model_calls"] == 6 and run.data.tags["llmops.registered"] == "qa/2"
    shown = version.model_config[DEMONSTRATIONS_KEY]
    assert {e["answer"] for e in shown["examples"]} >= {r["expected"] for r in corrected}
    assert version.template == get_version("qa/1", settings).template  # variables unchanged
    # no alias moved; and git's template is still what sync compares with (not re-registered)
    assert int(get_version("qa@production", settings).version) == 1
    assert sync_prompts(settings).unchanged == [("qa", 1), ("qa_closed_book", 1),
                                                ("summarize", 1)]
    # a chain serving it: the question a user corrected is answered with the correction shown
    logged = log_chain(project / "chains" / "docs_qa.py", name="docs-qa-opt", settings=settings,
                       prompt="qa/2")
    assert logged.prompt_uri == "prompts:/qa/2"


def test_bad_input_is_a_clear_error_and_registers_nothing(project: Path, qa_registered,
                                                          tmp_path: Path) -> None:
    from llmops.chains import log_chain
    from llmops.optimize import OptimizeConfig, optimize_prompt
    from llmops.prompts import sync_prompts

    settings = qa_registered
    config = OptimizeConfig(budget=1)
    with pytest.raises(LlmopsError, match="no feedback yet"):
        optimize_prompt("qa", settings, config)
    collect_feedback(settings, golden(3))
    with pytest.raises(LlmopsError, match="too few feedback examples for a held-out set: 3"):
        optimize_prompt("qa", settings, config)
    empty = tmp_path / "heldout.jsonl"
    empty.write_text(json.dumps({"question": golden(1)[0]["question"], "expected": "x"}) + "\n")
    with pytest.raises(LlmopsError, match="0 held out"):  # its one question is in the feedback
        optimize_prompt("qa", settings, config.model_copy(update={"heldout": str(empty)}))
    # the template's variables change in git: qa/2 takes {{tone}}, the feedback was on qa/1
    collect_feedback(settings, golden(8)[3:])
    qa = project / "prompts" / "qa.yaml"
    qa.write_text(qa.read_text().replace("variables: [context, question]",
                                         "variables: [context, question, tone]").replace(
        "Answer in one short sentence", "Answer in one short {{tone}} sentence"))
    assert sync_prompts(settings).registered == [("qa", 2)]
    with pytest.raises(PromptVariableError, match=r"collected with qa/1.*variables changed"):
        optimize_prompt("qa", settings, config, base_ref="qa/2")
    with pytest.raises(PromptVariableError, match="the chain cannot serve it"):
        log_chain(project / "chains" / "docs_qa.py", settings=settings, prompt="qa/2")
    assert _versions("qa") == [1, 2]
    # the CLI says what is missing
    out = run_cli("prompts", "optimize", "qa", cwd=project)
    assert out.returncode == 2 and "--from-feedback" in out.stderr


def test_gepa_keeps_the_placeholders_and_runs_within_its_budget(project: Path, qa_registered,
                                                                tmp_path: Path) -> None:
    """GEPA with the tiny model as task and reflection model: the plumbing, not quality (a
    135M model cannot rewrite a prompt; the benchmark shows it with SmolLM2)."""
    from llmops.optimize import Example, OptimizeConfig, optimize_prompt
    from llmops.optimize.reflective import COMPONENT, _Adapter
    from llmops.optimize.scoring import PromptScorer
    from llmops.prompts import get_version, to_template

    settings = qa_registered
    rows = golden(6)
    collect_feedback(settings, rows)
    heldout = _paraphrases(rows[:3], tmp_path / "heldout.jsonl")
    result = optimize_prompt("qa", settings, OptimizeConfig(optimizer="gepa", budget=2,
                                                            heldout=str(heldout)))
    assert result.candidates >= 1 and 0 < result.model_calls <= 2 * 3 + 3
    assert result.registered_version in (None, 2)
    # a proposal that drops {{context}} is scored 0 without asking the model
    base = to_template(get_version("qa/1", settings))
    scorer = PromptScorer(settings, None, OptimizeConfig())  # type: ignore[arg-type]
    examples = [Example(r["question"], r["expected"], "heldout") for r in rows[:2]]
    got = _Adapter(base, scorer).evaluate(examples, {COMPONENT: "Answer briefly."},
                                          capture_traces=True)
    assert got.scores == [0.0, 0.0] and scorer.calls == 0
    assert got.trajectories[0]["expected"] == rows[0]["expected"]


def test_a_question_gets_the_demonstrations_closest_to_it_and_a_new_one_none() -> None:
    from llmops.chains.building import prompt_with_demonstrations
    from llmops.optimize import with_demonstrations
    from llmops.prompts import PromptTemplate

    base = PromptTemplate.draft([{"role": "system", "content": "Be brief.\n\n{{context}}"},
                                 {"role": "user", "content": "Question: {{question}}"}], "qa")
    shown = [{"question": "How do I promote a chain to production?",
              "answer": "Run llmops chains promote docs-qa --alias production."},
             {"question": "Which torch version is installed?", "answer": "torch==2.13.0."}]
    # MiniLM's cosine: the paraphrase 0.43 to its original, the sky question under 0.1
    prompt = prompt_with_demonstrations(with_demonstrations(base, shown, 1, 0.4, "minilm"))
    paraphrase = prompt.invoke({"context": "ctx", "question":
                                "Which command moves a chain's production alias?"}).to_messages()
    assert [m.type for m in paraphrase] == ["system", "human", "ai", "human"]
    assert paraphrase[1].content == "Question: How do I promote a chain to production?"
    assert paraphrase[2].content == shown[0]["answer"]
    unrelated = prompt.invoke({"context": "ctx", "question": "What colour is the sky?"})
    assert [m.type for m in unrelated.to_messages()] == ["system", "human"]
    # a text template cannot carry chat turns: a clear error
    with pytest.raises(ValueError, match="chat template"):
        with_demonstrations(PromptTemplate.draft("Q: {{question}}"), shown, 1, 0.6, "minilm")


def test_matching_on_question_and_answer_finds_a_question_worded_like_the_answer() -> None:
    from dataclasses import replace

    from llmops.chains.building import prompt_with_demonstrations
    from llmops.chains.demonstrations import DEMONSTRATIONS_KEY
    from llmops.optimize import with_demonstrations
    from llmops.prompts import PromptTemplate

    base = PromptTemplate.draft([{"role": "system", "content": "Be brief.\n\n{{context}}"},
                                 {"role": "user", "content": "Question: {{question}}"}], "qa")
    gate = {"question": "Which file configures the promotion gate?",
            "answer": "The promotion gate reads evals/gate.yaml: its datasets, metrics and "
                      "thresholds."}
    shown = [gate, {"question": "Which torch version is installed?", "answer": "torch==2.13.0."}]
    asked = {"context": "ctx",
             "question": "llmops eval gate reads its datasets and metrics from what file?"}
    # MiniLM's cosine to the example's question alone is under 0.3: not shown at a 0.4 floor
    by_question = prompt_with_demonstrations(
        with_demonstrations(base, shown, 1, 0.4, "minilm", "question"))
    assert [m.type for m in by_question.invoke(asked).to_messages()] == ["system", "human"]
    # with its answer, which names what the question asks about, it is the one shown
    both = with_demonstrations(base, shown, 1, 0.4, "minilm", "question_answer")
    messages = prompt_with_demonstrations(both).invoke(asked).to_messages()
    assert [m.type for m in messages] == ["system", "human", "ai", "human"]
    assert messages[2].content == gate["answer"]
    # an unknown match: refused when the version is made, and when a stored one is read
    with pytest.raises(ValueError, match="match must be one of"):
        with_demonstrations(base, shown, 1, 0.4, "minilm", "answer")
    stored = replace(both, model_parameters={**both.model_parameters, DEMONSTRATIONS_KEY: {
        **both.model_parameters[DEMONSTRATIONS_KEY], "match": "answer"}})
    with pytest.raises(ValueError, match="match must be one of"):
        prompt_with_demonstrations(stored)
