"""Demonstrations retrieved per question: a prompt version that carries answers users wanted.

An optimized prompt version (``llmops prompts optimize``, the ``fewshot`` optimizer) keeps,
in its model parameters under ``llmops.demonstrations``, examples from feedback (a question
and the answer users wanted: their correction, or an answer they rated good), how many to
show (``k``), how close a question must be (``min_similarity``, cosine of the index's
embedder) and what it is compared with (``match``: the example's question, or its question
and answer together, which also matches a question worded like the answer: "which command
moves the production alias?" is closer to "promote ... --alias production" than to "How do
I promote a chain?"). For each question the chain is asked, the closest examples above that
similarity go before the question as user/assistant turns; a question like none of them gets the
base prompt as it was. The template and its variables do not change, so any chain serving
the prompt serves its optimized versions too.
"""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompt_values import ChatPromptValue, PromptValue
from langchain_core.prompts import BasePromptTemplate, ChatPromptTemplate
from pydantic import ConfigDict, PrivateAttr

__all__ = ["DEMONSTRATIONS_KEY", "MATCHES", "RetrievedDemonstrationsPrompt", "check_match",
           "demonstration_settings"]

DEMONSTRATIONS_KEY = "llmops.demonstrations"
MATCHES = ("question", "question_answer")  # what a question is compared with


def check_match(match: str) -> str:
    """``match`` if it is one of :data:`MATCHES`, else a ValueError naming them."""
    if match not in MATCHES:
        raise ValueError(f"demonstrations' match must be one of {', '.join(MATCHES)}, "
                         f"not {match!r}")
    return match


def demonstration_settings(model_parameters: dict[str, Any] | None) -> dict[str, Any] | None:
    """The demonstrations a prompt version carries (None: it carries none)."""
    found = (model_parameters or {}).get(DEMONSTRATIONS_KEY)
    return found if isinstance(found, dict) and found.get("examples") else None


class RetrievedDemonstrationsPrompt(BasePromptTemplate):
    """A chat template with the ``k`` examples closest to each question put before it."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base: ChatPromptTemplate
    examples: list[dict[str, str]]  # {"question", "answer"}
    k: int = 2
    min_similarity: float = 0.6
    embedder: str = "minilm"
    match: str = "question"  # or "question_answer"
    _vectors: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def wrap(cls, base: BasePromptTemplate, settings: dict[str, Any]) -> RetrievedDemonstrationsPrompt:
        if not isinstance(base, ChatPromptTemplate):
            raise TypeError("demonstrations need a chat template (a list of messages)")
        return cls(base=base, input_variables=list(base.input_variables),
                   examples=[{"question": str(e["question"]), "answer": str(e["answer"])}
                             for e in settings["examples"]],
                   k=int(settings.get("k", 2)),
                   min_similarity=float(settings.get("min_similarity", 0.6)),
                   embedder=str(settings.get("embedder", "minilm")),
                   match=check_match(str(settings.get("match", "question"))),
                   metadata=base.metadata)

    @property
    def _prompt_type(self) -> str:
        return "llmops-retrieved-demonstrations"

    def _embed(self, texts: list[str]) -> Any:
        import numpy as np

        from llmops.indexing.embedding import load_embedder

        return np.asarray(load_embedder(self.embedder).embed(texts), dtype="float32")

    def _key(self, example: dict[str, str]) -> str:
        """What a question is compared with: the example's question, or question and answer."""
        if self.match == "question_answer":
            return f"{example['question']} {example['answer']}"
        return example["question"]

    def select(self, question: str) -> list[dict[str, str]]:
        """The examples shown for ``question``: the ``k`` closest, above ``min_similarity``."""
        import numpy as np

        with self._lock:
            if self._vectors is None:
                self._vectors = self._embed([self._key(e) for e in self.examples])
        similarity = self._vectors @ self._embed([question])[0]
        order = np.argsort(-similarity)[:self.k]
        return [self.examples[i] for i in order if similarity[i] >= self.min_similarity]

    def _turn(self, question: str) -> HumanMessage:
        """A demonstration's question as the template's last user message asks it."""
        last = next(m for m in reversed(self.base.messages)
                    if getattr(m, "prompt", None) is not None
                    and m.__class__.__name__.startswith("Human"))
        values = {v: "" for v in self.input_variables}
        values["question"] = question
        return HumanMessage(last.prompt.format(**{k: values.get(k, "")  # type: ignore[union-attr]
                                                  for k in last.input_variables}).strip())

    def format_messages(self, **kwargs: Any) -> list[BaseMessage]:
        messages = self.base.format_messages(**kwargs)
        shown = self.select(str(kwargs.get("question", "")))
        if not shown:
            return messages
        at = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
        turns: list[BaseMessage] = []
        for example in shown:
            turns += [self._turn(example["question"]), AIMessage(example["answer"])]
        return messages[:at] + turns + messages[at:]

    def format_prompt(self, **kwargs: Any) -> PromptValue:
        return ChatPromptValue(messages=self.format_messages(**kwargs))

    def format(self, **kwargs: Any) -> str:
        return self.format_prompt(**kwargs).to_string()
