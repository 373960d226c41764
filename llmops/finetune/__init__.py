"""Fine-tuning: LoRA adapters trained with PEFT + TRL (SFT, KTO), evaluated against their
base model, and registered in MLflow as models that reference the base."""

from __future__ import annotations

from llmops.finetune.config import (
    DistributedConfig,
    EvaluationConfig,
    FinetuneConfig,
    FsdpConfig,
    TrainingConfig,
    check_servable,
    load_finetune_config,
)
from llmops.finetune.data import TrainingData, load_training_data
from llmops.finetune.job import FinetuneResult, finetune
from llmops.finetune.launch import inside_launcher, launch_command
from llmops.registry import AdapterVersion, load_adapter, promote_adapter

__all__ = [
    "AdapterVersion",
    "DistributedConfig",
    "EvaluationConfig",
    "FinetuneConfig",
    "FinetuneResult",
    "FsdpConfig",
    "TrainingConfig",
    "TrainingData",
    "check_servable",
    "finetune",
    "inside_launcher",
    "launch_command",
    "load_adapter",
    "load_finetune_config",
    "load_training_data",
    "promote_adapter",
]
