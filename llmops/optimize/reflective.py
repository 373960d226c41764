"""Reflective search with GEPA: a reflection model rewrites the instructions from failures.

The component GEPA evolves is the template's instructions (its system message; a text
template's whole text). Each candidate is scored on the held-out examples by the chain's
model (``PromptScorer``); GEPA shows the reflection model the questions, the answers, the
answers users wanted and their token F1, and asks it for better instructions. A proposal
that drops one of the template's variables (``{{context}}``, ``{{question}}``) scores 0 and
is never kept. The reflection model can be the served model or any OpenAI-compatible
endpoint; it must be able to rewrite a prompt (a 135M model cannot: its proposals lose the
placeholders or the task, and the search keeps the base prompt).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from llmops.config import ChatModelSettings, Settings
from llmops.errors import MissingExtraError
from llmops.optimize.config import OptimizeConfig
from llmops.optimize.data import Example
from llmops.optimize.scoring import PromptScorer
from llmops.prompts.templates import PromptTemplate, find_variables

__all__ = ["ReflectiveResult", "instructions_of", "reflective_search", "with_instructions"]

COMPONENT = "instructions"


def instructions_of(template: PromptTemplate) -> str:
    if isinstance(template.template, str):
        return template.template
    return next((m["content"] for m in template.template if m["role"] == "system"), "")


def with_instructions(template: PromptTemplate, text: str) -> PromptTemplate:
    if isinstance(template.template, str):
        return replace(template, template=text)
    messages = [dict(m) for m in template.template]
    for m in messages:
        if m["role"] == "system":
            m["content"] = text
            break
    else:
        messages.insert(0, {"role": "system", "content": text})
    return replace(template, template=messages)


@dataclass
class ReflectiveResult:
    best: PromptTemplate
    best_score: float
    candidates: int
    metric_calls: int


class _Adapter:
    """GEPA's adapter (``gepa.core.adapter.GEPAAdapter``) over the chain's model."""

    propose_new_texts = None  # GEPA's own proposer, with the reflection model

    def __init__(self, template: PromptTemplate, scorer: PromptScorer) -> None:
        self.template, self.scorer = template, scorer

    def evaluate(self, batch: list[Example], candidate: dict[str, str],
                 capture_traces: bool = False) -> Any:
        from gepa.core.adapter import EvaluationBatch

        text = candidate[COMPONENT]
        built = with_instructions(self.template, text)
        if find_variables(built.template) != set(self.template.variables):
            answers = ["(the instructions lost a placeholder)"] * len(batch)
            scores = [0.0] * len(batch)
        else:
            asked = self.scorer.ask(built, batch)
            answers, scores = asked.answers, asked.scores
        traces = ([{"question": e.question, "answer": a, "expected": e.expected, "score": s}
                   for e, a, s in zip(batch, answers, scores, strict=True)]
                  if capture_traces else None)
        return EvaluationBatch(outputs=answers, scores=scores, trajectories=traces)

    def make_reflective_dataset(self, candidate: dict[str, str], eval_batch: Any,
                                components_to_update: list[str]) -> dict[str, list[dict]]:
        rows = [{"Inputs": t["question"], "Generated Outputs": t["answer"],
                 "Feedback": f"The user wanted: {t['expected']} (token F1 {t['score']:.2f}). "
                             "Keep the placeholders {{context}} and {{question}} as they are."}
                for t in eval_batch.trajectories or []]
        return {c: rows for c in components_to_update}


def _reflection_lm(settings: Settings, config: OptimizeConfig) -> Any:
    from llmops.models import build_chat_model

    endpoint = config.reflection_endpoint or config.endpoint
    if endpoint:
        chat = ChatModelSettings(kind="openai", base_url=endpoint,
                                 model=config.reflection_model or config.model or "base",
                                 max_tokens=400, temperature=0.7)
    else:
        chat = settings.chat_model.model_copy(update={"max_tokens": 400, "temperature": 0.7})
    model = build_chat_model(chat, settings.models_dir, settings.root / "docs")

    def ask(prompt: str | list[dict[str, Any]]) -> str:
        messages = ([("user", prompt)] if isinstance(prompt, str)
                    else [(m["role"], m["content"]) for m in prompt])
        return str(model.invoke(messages).content)

    return ask


def reflective_search(template: PromptTemplate, train: list[Example], heldout: list[Example],
                      scorer: PromptScorer, settings: Settings,
                      config: OptimizeConfig) -> ReflectiveResult:
    """GEPA over the instructions; the best candidate on the held-out examples."""
    try:
        import gepa
    except ImportError as exc:
        raise MissingExtraError("gepa", "optimize") from exc
    result = gepa.optimize(
        seed_candidate={COMPONENT: instructions_of(template)}, trainset=train, valset=heldout,
        adapter=_Adapter(template, scorer), reflection_lm=_reflection_lm(settings, config),
        # the budget counts held-out passes, as the few-shot search's candidates do
        max_metric_calls=config.budget * len(heldout),
        reflection_minibatch_size=min(3, len(train)), seed=config.seed,
        display_progress_bar=False, raise_on_exception=False)
    best = with_instructions(template, result.best_candidate[COMPONENT])
    return ReflectiveResult(best=best, best_score=result.val_aggregate_scores[result.best_idx],
                            candidates=len(result.candidates),
                            metric_calls=int(result.total_metric_calls or 0))
