"""Few-shot search: demonstrations from the feedback, retrieved per question, tuned on held-out.

The pool is the feedback's examples (corrections first: they carry what the model got
wrong; then answers rated good). A candidate is the base template carrying that pool with
``k`` (how many demonstrations a question gets), ``min_similarity`` (how close an
example must be to be shown) and ``match`` (whether a question is compared with an example's
question, or with its question and answer); at answer time the chain puts the closest examples
before the question (``llmops.chains.demonstrations``), so a question users corrected
before, however it is worded, is answered with the correction in front of the model, and a
new one gets the base prompt. The search scores settings of the three on
the held-out examples and keeps the best. No model writes prompts here, so it works with a
135M model.
"""

from __future__ import annotations

import json
from dataclasses import replace

from llmops.chains.demonstrations import DEMONSTRATIONS_KEY, MATCHES, check_match
from llmops.optimize.config import OptimizeConfig
from llmops.optimize.data import Example
from llmops.prompts.templates import PromptTemplate

__all__ = ["SETTINGS", "fewshot_candidates", "with_demonstrations"]

# (k, min_similarity, match), most promising first; a budget of N tries the first N; on a
# tie the earlier (fewer examples shown) is kept. Measured on the demo's data (SmolLM2-135M in
# process, 12 golden questions, the 9 it answered wrong corrected, their paraphrases asked):
# base token F1 0.178; one example matched on question and answer 0.320; two matched on the
# question alone 0.258. MiniLM's cosine between a paraphrase and its original's question
# (evals/, 30 pairs): median 0.62, a quarter under 0.43, top-1 21/30; with the answer
# appended: median 0.63, a quarter under 0.53, top-1 27/30; the closest other: median 0.46.
Q, QA = MATCHES
SETTINGS = [(1, 0.4, QA), (2, 0.4, QA), (1, 0.5, QA), (2, 0.4, Q), (1, 0.3, QA), (1, 0.5, Q),
            (3, 0.3, QA), (2, 0.55, Q), (1, 0.6, QA), (3, 0.3, Q), (2, 0.5, QA), (1, 0.6, Q)]
_MAX_CHARS = 7000  # MLflow keeps a version's model parameters in a tag (8,000 characters)
_MAX_ANSWER = 400


def _pool(train: list[Example], max_examples: int) -> list[dict[str, str]]:
    ordered = ([e for e in train if e.origin == "correction"]
               + [e for e in train if e.origin != "correction"])
    pool: list[dict[str, str]] = []
    for e in ordered[:max_examples]:
        candidate = [*pool, {"question": e.question[:_MAX_ANSWER],
                             "answer": e.expected[:_MAX_ANSWER]}]
        if len(json.dumps(candidate, ensure_ascii=False)) > _MAX_CHARS:
            break
        pool = candidate
    return pool


def with_demonstrations(template: PromptTemplate, examples: list[dict[str, str]], k: int,
                        min_similarity: float, embedder: str,
                        match: str = "question") -> PromptTemplate:
    """``template`` carrying ``examples`` to show, ``k`` at most per question."""
    if not isinstance(template.template, list):
        raise ValueError(f"prompt '{template.name}' is a text template: demonstrations are "
                         "put in as chat turns, so the few-shot search needs a chat template "
                         "(use --optimizer gepa)")
    check_match(match)  # before any version carries it
    params = {**template.model_parameters, DEMONSTRATIONS_KEY: {
        "examples": examples, "k": k, "min_similarity": min_similarity, "embedder": embedder,
        "match": match}}
    return replace(template, model_parameters=params)


def fewshot_candidates(template: PromptTemplate, train: list[Example], config: OptimizeConfig,
                       embedder: str) -> list[tuple[str, PromptTemplate]]:
    """Up to ``budget`` candidates: (a description, the template)."""
    pool = _pool(train, config.max_demos)
    return [(f"{len(pool)} examples, k={k}, min similarity {sim:g} on the "
             f"{'question and answer' if match == QA else 'question'}",
             with_demonstrations(template, pool, k, sim, embedder, match))
            for k, sim, match in SETTINGS[:config.budget]]
