"""The docs assistant's question-answering chain (an MLflow models-from-code file).

Run directly or through ``llmops.chains`` it uses ``CONFIG`` below (the prompt
looked up live, the environment's chat model). When MLflow loads the logged
model, the config logged with it is used instead: the prompt pinned to one
version, the chat model written out in full.
"""

from __future__ import annotations

import mlflow

from llmops.chains import (
    ChainModel,
    build_qa_chain,
    chain_chat_model,
    chain_config,
    chain_prompt,
    chain_versions,
)

CONFIG = {
    "prompt": "qa@production",
    "description": "Answers questions about llmops from its documentation.",
}

config = chain_config(CONFIG)
chain = build_qa_chain(chain_prompt(config), chain_chat_model(config), chain_versions(config))

mlflow.models.set_model(ChainModel(chain))
