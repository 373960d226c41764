"""``optimize_prompt``: a better prompt version from feedback, registered with its lineage.

The steps: the base version (``NAME@production``, else the latest) and the feedback's
examples (``data``), the variables checked against the versions the feedback was served
with, the base scored on the held-out examples, the search (``fewshot`` or ``gepa``), and,
when the best candidate beats the base, a new version in MLflow's prompt registry tagged
with where it came from (base version, feedback table version, optimizer, budget, scores,
model calls). No alias moves: the new version goes through the usual path (a chain logged
with it, ``eval gate``, a rollout). Anything wrong stops the run before it registers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops.chains.building import chain_retriever
from llmops.chains.config import ChainConfig
from llmops.chains.packaging import read_chain_defaults
from llmops.config import Settings, load_settings
from llmops.errors import ChainFileError, PromptError, PromptNotFoundError, PromptVariableError
from llmops.optimize.config import OptimizeConfig
from llmops.optimize.data import FeedbackExamples, feedback_examples
from llmops.optimize.fewshot import fewshot_candidates
from llmops.optimize.reflective import reflective_search
from llmops.optimize.scoring import PromptScorer
from llmops.prompts import get_version, register_version, to_template
from llmops.prompts.templates import PromptTemplate
from llmops.stores import connect

__all__ = ["OptimizeResult", "optimize_prompt"]

CHAIN_FILE = Path("chains") / "docs_qa.py"


@dataclass
class OptimizeResult:
    prompt: str
    base_version: int
    optimizer: str
    base_score: float
    best_score: float
    best: PromptTemplate
    registered_version: int | None  # None: no candidate beat the base
    train_rows: int
    heldout_rows: int
    feedback_version: int | None
    candidates: int
    model_calls: int
    seconds: float
    tried: list[tuple[str, float]] = field(default_factory=list)  # (candidate, held-out F1)

    @property
    def gain(self) -> float:
        return self.best_score - self.base_score


def _base(name: str, ref: str | None, settings: Settings) -> Any:
    if ref is not None:
        return get_version(ref, settings)
    try:
        return get_version(f"{name}@production", settings)
    except PromptNotFoundError:
        return get_version(name, settings)


def _check_variables(base: PromptTemplate, base_version: int, examples: FeedbackExamples,
                     name: str, settings: Settings) -> None:
    """The feedback's examples were served with versions taking the base's variables."""
    served = {e.prompt_version for e in examples.train + examples.heldout if e.prompt_version}
    for version in sorted(served):
        try:
            other = to_template(get_version(f"{name}/{version}", settings))
        except PromptNotFoundError:
            continue
        if set(other.variables) != set(base.variables):
            raise PromptVariableError(
                f"the feedback was collected with {name}/{version}, which takes "
                f"{', '.join(sorted(other.variables))}; {name}/{base_version} "
                f"takes {', '.join(sorted(base.variables))}: a template whose variables changed "
                f"cannot be optimized on it (optimize from {name}/{version}, or collect feedback "
                "on the new template); nothing registered")


def _chain(settings: Settings, chain_file: Path | None, prompt: str) -> ChainConfig:
    path = chain_file or settings.root / CHAIN_FILE
    defaults = read_chain_defaults(Path(path))  # ChainFileError for an unreadable file
    try:
        config = ChainConfig.model_validate(defaults)
    except Exception as exc:  # pydantic ValidationError
        raise ChainFileError(f"{path}: CONFIG is invalid: {exc}") from exc
    return config.model_copy(update={"prompt": prompt})


def optimize_prompt(name: str, settings: Settings | None = None,
                    config: OptimizeConfig | None = None, base_ref: str | None = None,
                    chain_file: Path | None = None, chain: str | None = None,
                    echo: Any = None) -> OptimizeResult:
    """Search a better version of prompt ``name`` on the feedback; register it if better."""
    import mlflow

    settings = settings or load_settings()
    config = config or OptimizeConfig()
    say = echo or (lambda _line: None)
    start = time.perf_counter()
    connect(settings)
    version = _base(name, base_ref, settings)
    base = to_template(version)
    base_version = int(version.version)
    examples = feedback_examples(settings, version.name, config, chain=chain)
    _check_variables(base, base_version, examples, version.name, settings)
    chain_config = _chain(settings, chain_file, f"{version.name}/{base_version}")
    scorer = PromptScorer(settings, chain_config, config,
                          retriever=chain_retriever(chain_config, settings))
    say(f"{version.name}/{base_version}: {len(examples.train)} examples to search with, "
        f"{len(examples.heldout)} held out (feedback table version {examples.feedback_version})")
    base_score = scorer.ask(base, examples.heldout).mean
    say(f"  base prompt: held-out token F1 {base_score:.3f}")
    tried: list[tuple[str, float]] = []
    if config.optimizer == "fewshot":
        best, best_score = base, base_score
        embedder = ((chain_config.retriever.embedder if chain_config.retriever else None)
                    or settings.index.embedder)
        try:
            found = fewshot_candidates(base, examples.train, config, embedder)
        except ValueError as exc:
            raise PromptError(str(exc)) from exc
        for how, candidate in found:
            score = scorer.ask(candidate, examples.heldout).mean
            tried.append((how, score))
            say(f"  {how}: {score:.3f}")
            if score > best_score:
                best, best_score = candidate, score
        candidates = len(tried)
    else:
        found = reflective_search(base, examples.train, examples.heldout, scorer, settings,
                                  config)
        best, best_score, candidates = found.best, found.best_score, found.candidates
        say(f"  GEPA: {found.candidates} candidates, best held-out token F1 {best_score:.3f}")
    seconds = time.perf_counter() - start
    result = OptimizeResult(
        prompt=version.name, base_version=base_version, optimizer=config.optimizer,
        base_score=base_score, best_score=best_score, best=best, registered_version=None,
        train_rows=len(examples.train), heldout_rows=len(examples.heldout),
        feedback_version=examples.feedback_version, candidates=candidates,
        model_calls=scorer.calls, seconds=seconds, tried=tried)
    improved = best is not base and best_score > base_score + config.min_gain
    with mlflow.start_run(run_name=f"optimize-{version.name}"):
        mlflow.log_params({"llmops.prompt": f"{version.name}/{base_version}",
                           "optimizer": config.optimizer, "budget": config.budget,
                           "train_rows": result.train_rows, "heldout_rows": result.heldout_rows,
                           "feedback_table_version": examples.feedback_version})
        mlflow.log_metrics({"base_token_f1": base_score, "best_token_f1": best_score,
                            "candidates": candidates, "model_calls": scorer.calls,
                            "seconds": seconds})
        if improved:
            tags = {"llmops.optimizer": config.optimizer, "llmops.budget": str(config.budget),
                    "llmops.optimized_from": f"{version.name}/{base_version}",
                    "llmops.feedback_table_version": str(examples.feedback_version),
                    "llmops.heldout_token_f1.base": f"{base_score:.4f}",
                    "llmops.heldout_token_f1.optimized": f"{best_score:.4f}",
                    "llmops.train_rows": str(result.train_rows),
                    "llmops.heldout_rows": str(result.heldout_rows),
                    "llmops.model_calls": str(scorer.calls),
                    "llmops.optimize_run": mlflow.active_run().info.run_id}
            result.registered_version = register_version(
                PromptTemplate(name=version.name, template=best.template,
                               variables=base.variables, model_parameters=best.model_parameters),
                tags, f"optimized from {version.name}/{base_version} on feedback "
                      f"({config.optimizer}, budget {config.budget})", settings)
            mlflow.set_tag("llmops.registered", f"{version.name}/{result.registered_version}")
    if not improved:
        say(f"  no candidate beat the base prompt by more than {config.min_gain:g}: nothing "
            "registered")
    return result



def score_on(settings: Settings, templates: dict[str, PromptTemplate], models: dict[str, str],
             rows: list[dict[str, Any]], endpoint: str, chain_file: Path | None = None,
             config: OptimizeConfig | None = None) -> dict[tuple[str, str], list[str]]:
    """Each template's answers to ``rows`` (question, expected) with each served model, asked
    as the chain asks (its retriever, the version's demonstrations) through ``endpoint``:
    ``{(template label, model label): answers}``."""
    from llmops.optimize.data import Example

    examples = [Example(str(r["question"]), str(r["expected"]), "heldout") for r in rows]
    out: dict[tuple[str, str], list[str]] = {}
    chain_config = _chain(settings, chain_file, next(iter(templates.values())).name)
    retriever = chain_retriever(chain_config, settings)
    contexts: dict[str, str] = {}  # retrieved once per question, for every combination
    for label, template in templates.items():
        for model_label, model in models.items():
            scorer = PromptScorer(settings, chain_config, (config or OptimizeConfig()).model_copy(
                update={"endpoint": endpoint, "model": model}), retriever=retriever,
                                  contexts=contexts)
            out[(label, model_label)] = scorer.ask(template, examples).answers
    return out
