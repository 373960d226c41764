"""The docs assistant with the fine-tuned LoRA adapter: docs_qa.py's chain on docs-qa-lora.

Logged as a candidate version of ``docs-qa`` (``llmops chains log chains/docs_qa_tuned.py
--name docs-qa --alias staging``). Logging pins the adapter to the exact version that
``docs-qa-lora@production`` names, so the promotion gate judges the adapter with the chain.
"""

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
    # the project's chat model (llmops.yaml), with the adapter on top
    "chat_model": {"adapter": "docs-qa-lora@production"},
    "description": "Answers questions about llmops from its documentation, with sources, "
                   "on the LoRA adapter fine-tuned from user feedback.",
}

config = chain_config(CONFIG)
chain = build_qa_chain(
    chain_prompt(config),
    chain_chat_model(config),
    chain_versions(config),
    retriever=chain_retriever(config),
)

mlflow.models.set_model(ChainModel(chain))
