"""Scoring a candidate prompt: ask the chain's model with it, compare with the expected answers.

Each question's retrieved context is fetched once (the chain's own retriever) and reused for
every candidate, so a candidate costs one model call per held-out question. The score is
the mean token F1 against the expected answers (``llmops.evals.scorers``), what the gate
and the demo report.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from llmops.chains.building import chain_chat_model, prompt_with_demonstrations
from llmops.chains.config import ChainConfig, ResolvedPrompt
from llmops.chains.qa import format_context
from llmops.config import ChatModelSettings, Settings
from llmops.evals.scorers import token_f1
from llmops.optimize.config import OptimizeConfig
from llmops.optimize.data import Example
from llmops.prompts.templates import PromptTemplate

__all__ = ["Asked", "PromptScorer"]


@dataclass
class Asked:
    """One candidate on a set of examples: the answers, their token F1 and the mean."""

    answers: list[str]
    scores: list[float]

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0


@dataclass
class PromptScorer:
    """Asks the chain's model with candidate templates; counts the model calls made."""

    settings: Settings
    chain: ChainConfig
    config: OptimizeConfig
    retriever: Any = None
    calls: int = 0
    contexts: dict[str, str] = field(default_factory=dict)  # question -> its context
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _context(self, question: str) -> str:
        if self.retriever is None:
            return ""
        if question not in self.contexts:
            self.contexts[question] = format_context(self.retriever.invoke(question))
        return self.contexts[question]

    def _model(self, template: PromptTemplate) -> Any:
        resolved = ResolvedPrompt(name=template.name, version=0, uri="prompts:/candidate/0",
                                  template=template.template,
                                  model_parameters=template.model_parameters)
        update: dict[str, Any] = {"resolved_prompt": resolved}
        if self.config.endpoint:
            update["chat_model"] = ChatModelSettings(
                kind="openai", base_url=self.config.endpoint,
                model=self.config.model or "base",
                max_tokens=self.settings.chat_model.max_tokens,
                temperature=self.settings.chat_model.temperature)
        return chain_chat_model(self.chain.model_copy(update=update), self.settings)

    def ask(self, template: PromptTemplate, examples: list[Example]) -> Asked:
        """``template``'s answers to ``examples`` and their token F1."""
        from langchain_core.output_parsers import StrOutputParser

        model = self._model(template) | StrOutputParser()
        prompt = prompt_with_demonstrations(template)  # as the chain renders it
        wants_context = "context" in template.variables

        def one(example: Example) -> str:
            values = {"question": example.question}
            if wants_context:
                values["context"] = self._context(example.question)
            messages = prompt.invoke(values).to_messages()
            with self._lock:
                self.calls += 1
            return str(model.invoke(messages)).strip()

        for example in examples:  # retrieval once per question, before any parallel asking
            if wants_context:
                self._context(example.question)
        workers = self.config.concurrency if self.config.endpoint else 1
        if workers > 1:
            with ThreadPoolExecutor(workers, thread_name_prefix="optimize") as pool:
                answers = list(pool.map(one, examples))
        else:
            answers = [one(e) for e in examples]
        return Asked(answers, [token_f1(a, e.expected) for a, e in zip(answers, examples,
                                                                        strict=True)])
