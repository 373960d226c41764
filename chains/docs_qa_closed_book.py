"""The docs assistant without retrieval: the closed-book baseline (an MLflow models-from-code file).

The same chat model as ``docs_qa.py``, asked the question alone. Its scores on the
golden set against ``docs_qa.py``'s are what retrieval adds; logged as a candidate
of ``docs-qa`` it must fail the promotion gate (``llmops chains log
chains/docs_qa_closed_book.py --name docs-qa --alias staging``).
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
    "prompt": "qa_closed_book@production",
    "description": "Answers questions about llmops without its documentation (closed book).",
}

config = chain_config(CONFIG)
chain = build_qa_chain(chain_prompt(config), chain_chat_model(config), chain_versions(config))

mlflow.models.set_model(ChainModel(chain))
