"""Fixtures of the fine-tuning tests: corrections about the docs, and a fast job config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llmops.finetune import FinetuneConfig

CORRECTIONS = [
    ("How do I promote a chain to production?", "Run llmops chains promote NAME --alias production."),
    ("Where are prompt templates kept?", "In prompts yaml files synced to the MLflow prompt registry."),
    ("What does llmops index update do?", "It embeds new chunks and deletes stale ones in Chroma."),
    ("How do I start the inference endpoint?", "Run llmops serve to start vLLM behind the gateway."),
    ("What is an alias?", "A named pointer such as production to one registered version."),
    ("Where does feedback go?", "Into the feedback Delta table of the lakehouse."),
    ("Which table logs every request?", "The inference_log Delta table records every request."),
    ("How is a chain packaged?", "As an MLflow pyfunc model logged from code."),
    ("What picks the environment?", "The --env option or the LLMOPS_ENV variable."),
    ("What does the promotion gate compare?", "Token F1 of the staging candidate against production."),
    ("Which model runs offline?", "The tiny Llama built from the docs without a model hub."),
    ("How are adapters served?", "vLLM hot-loads registered LoRA adapters by name."),
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def sft_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "corrections.jsonl", [
        {"prompt": q, "completion": a, "request_id": f"r{i}", "feedback_id": f"f{i}",
         "chain": "docs-qa", "chain_version": "3", "prompt_name": "qa", "prompt_version": "2",
         "model": "base", "adapter": None}
        for i, (q, a) in enumerate(CORRECTIONS)
    ])


@pytest.fixture
def kto_file(tmp_path: Path) -> Path:
    rows = []
    for i, (q, a) in enumerate(CORRECTIONS[:8]):
        rows.append({"prompt": q, "completion": a, "label": True, "feedback_id": f"f{i}"})
        rows.append({"prompt": q, "completion": "I do not know.", "label": False,
                     "feedback_id": f"g{i}"})
    return write_jsonl(tmp_path / "thumbs.jsonl", rows)


def fast_config(**training: Any) -> FinetuneConfig:
    """A config that trains the tiny model in seconds (few epochs, a high learning rate)."""
    return FinetuneConfig.model_validate({
        "lora": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0,
                 "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                    "up_proj", "down_proj"]},
        "training": {"epochs": 2, "learning_rate": 5e-3, "micro_batch_size": 4,
                     "eval_fraction": 0.25, **training},
        "evaluation": {"max_new_tokens": 16},
    })


def model_versions(name: str = "docs-qa-lora") -> list[Any]:
    from mlflow import MlflowClient

    return MlflowClient().search_model_versions(f"name = '{name}'")
