"""The docs assistant's question-answering chain (an MLflow models-from-code file).

A RAG chain: retrieve the top chunks of the documentation index for the
question, stuff them into the prompt's context, answer, and return the sources.

Run directly or through ``llmops.chains`` it uses ``CONFIG`` below (the prompt
looked up live, the environment's chat model and index). When MLflow loads the
logged model, the config logged with it is used instead: the prompt pinned to
one version, the chat model written out in full, the index version recorded.
"""

from __future__ import annotations

import mlflow

from llmops.chains import (
    ChainModel,
    build_qa_chain,
    chain_chat_model,
    chain_config,
    chain_prompt,
    chain_retriever,
    chain_versions,
)

CONFIG = {
    "prompt": "qa@production",
    "retriever": {"collection": "docs", "k": 2},
    "description": "Answers questions about llmops from its documentation, with sources.",
}

config = chain_config(CONFIG)
chain = build_qa_chain(
    chain_prompt(config),
    chain_chat_model(config),
    chain_versions(config),
    retriever=chain_retriever(config),
)

mlflow.models.set_model(ChainModel(chain))
