"""Settings of a fine-tuning job (``finetune/lora.yaml``).

The ``lora:`` section is passed through to a real ``peft.LoraConfig`` (and
validated by building one); everything else is typed here, with a help text per
field. ``load_finetune_config`` reads the file, ``check_servable`` checks the
adapter against what the serving engine accepts before any training starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmops.config import Settings
from llmops.errors import FinetuneError, MissingExtraError
from llmops.yamlfile import load_yaml_model, validate_model

if TYPE_CHECKING:
    from peft import LoraConfig

__all__ = [
    "DEFAULT_LORA",
    "FINETUNE_FILE",
    "DistributedConfig",
    "EvaluationConfig",
    "FinetuneConfig",
    "FsdpConfig",
    "TrainingConfig",
    "check_servable",
    "load_finetune_config",
]

FINETUNE_FILE = Path("finetune") / "lora.yaml"

# The projections vLLM can serve LoRA weights for on Llama/Qwen-shaped models.
DEFAULT_LORA: dict[str, Any] = {
    "r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


class TrainingConfig(BaseModel):
    """How the adapter is trained; ``None`` means "pick for the hardware"."""

    model_config = ConfigDict(extra="forbid")

    epochs: float = Field(3.0, gt=0, description="Passes over the training rows.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate of the adapter weights.")
    micro_batch_size: int = Field(4, ge=1, description="Rows per device per forward pass (KTO needs 2+).")
    grad_accumulation: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_seq_len: int = Field(
        1024, ge=16, description="Longest tokenized prompt + completion; longer rows are cut.")
    eval_fraction: float = Field(
        0.2, ge=0, lt=1,
        description="Share of rows held out for evaluation (at least one row when there are 2+ rows; "
                    "0 evaluates on the training rows instead).",
    )
    seed: int = Field(0, description="Seed for the hold-out split, the adapter's init and data order.")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of steps spent warming up the LR.")
    lr_scheduler: str = Field("linear", description="transformers scheduler name (linear, cosine, constant).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping.")
    bf16: bool | None = Field(None, description="bf16 mixed precision; default: on for GPUs "
                                                "and CPUs that compute in bf16 natively.")
    packing: bool | None = Field(
        None,
        description="Pack rows into padding-free batches (position_ids keep rows apart: no "
                    "cross-contamination); default: on with a GPU, off on CPU. SFT only.",
    )
    attn_implementation: str | None = Field(
        None,
        description="transformers attention kernel; default flash_attention_2 when installed on a "
                    "GPU, else sdpa.",
    )
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    kto_beta: float = Field(0.1, gt=0, description="KTO: strength of the KL penalty to the base model.")
    logging_steps: int = Field(1, ge=1, description="Log the loss every this many optimizer steps.")


class EvaluationConfig(BaseModel):
    """The adapter-versus-base evaluation run after training."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(48, ge=1, le=4096, description="Greedy tokens generated per answer.")
    max_rows: int = Field(128, ge=1, description="Held-out rows scored at most.")
    batch_size: int = Field(16, ge=1, description="Prompts generated at once.")
    on_train: bool = Field(
        False, description="Also score the training rows (train_*_token_f1): how well the "
                           "corrections were learnt, not how well they generalise.")
    data: str | None = Field(
        None, description="A JSON lines file of question/expected rows (e.g. paraphrases of the "
                          "corrected questions) scored instead of a held-out split; with it, "
                          "every data row trains.")


class FsdpConfig(BaseModel):
    """FSDP options, passed to ``accelerate launch --use_fsdp`` (or to the Trainer under torchrun)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1, 2] = Field(2, description="FSDP version (2 is the per-parameter sharding).")
    sharding_strategy: Literal["FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD", "NO_SHARD"] = Field(
        "FULL_SHARD", description="FSDP1 sharding; FSDP2 maps it to reshard_after_forward.")
    auto_wrap_policy: Literal["TRANSFORMER_BASED_WRAP", "SIZE_BASED_WRAP", "NO_WRAP"] = Field(
        "TRANSFORMER_BASED_WRAP", description="How modules are wrapped into FSDP units.")
    transformer_layer_cls_to_wrap: str | None = Field(
        None, description="Decoder layer class, e.g. LlamaDecoderLayer; default: the model's own.")
    offload_params: bool = Field(False, description="Keep parameters on the CPU between uses.")
    state_dict_type: Literal["FULL_STATE_DICT", "SHARDED_STATE_DICT"] = Field(
        "FULL_STATE_DICT", description="FULL lets the main process save a plain PEFT adapter.")
    activation_checkpointing: bool = Field(False, description="FSDP activation checkpointing.")
    cpu_ram_efficient_loading: bool = Field(
        True, description="Only the main process loads weights; the others receive them.")


class DistributedConfig(BaseModel):
    """Multi-GPU training: how ``llmops finetune run`` re-launches itself."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["none", "ddp", "fsdp"] = Field(
        "none", description="none: one process; ddp: replicated; fsdp: sharded model.")
    num_processes: int = Field(1, ge=1, description="Processes (GPUs) on this machine.")
    launcher: Literal["accelerate", "torchrun"] = Field(
        "accelerate", description="accelerate launch, or torchrun.")
    main_process_port: int | None = Field(None, ge=1, le=65535, description="Rendezvous port.")
    fsdp: FsdpConfig = Field(default_factory=FsdpConfig)

    @model_validator(mode="after")
    def _strategy_matches_processes(self) -> DistributedConfig:
        if self.num_processes > 1 and self.strategy == "none":
            raise ValueError("num_processes > 1 needs strategy 'ddp' or 'fsdp'")
        return self


class FinetuneConfig(BaseModel):
    """A fine-tuning job: the base model, the data, the adapter, the training and its evaluation."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["sft", "kto"] = Field(
        "sft", description="sft: prompt/completion pairs, loss on completions only; kto: thumbs-"
                           "labelled prompt/completion rows.")
    base_model: str | None = Field(
        None, description="'smollm2', 'tiny' (the offline models), a local model folder, or a "
                          "model id; default: the project's base model (chat_model.model).")
    data: str = Field(
        "feedback", description="'feedback' (built from the feedback table) or a JSON lines file.")
    registered_name: str = Field(
        "docs-qa-lora", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        description="Registered model name the adapter's versions go to.")
    alias: str | None = Field(None, description="Alias to point at the new version (e.g. staging).")
    lora: dict[str, Any] = Field(
        default_factory=lambda: dict(DEFAULT_LORA),
        description="Keyword arguments of peft.LoraConfig (r, lora_alpha, lora_dropout, "
                    "target_modules, ...); task_type is CAUSAL_LM.")
    max_lora_rank: int | None = Field(
        None, ge=1, description="Highest rank allowed; default: engine.max_lora_rank of "
                                "serving/endpoint.yaml.")
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)

    @field_validator("lora")
    @classmethod
    def _lora_is_a_peft_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        _build_lora(value)
        return value

    def lora_config(self) -> LoraConfig:
        """The ``peft.LoraConfig`` the ``lora:`` section describes."""
        return _build_lora(self.lora)

    @property
    def lora_rank(self) -> int:
        """The highest rank any module gets (``r``, or a larger one in ``rank_pattern``)."""
        cfg = self.lora_config()
        return max([int(cfg.r), *(int(v) for v in (cfg.rank_pattern or {}).values())])


def _build_lora(values: dict[str, Any]) -> LoraConfig:
    try:
        from peft import LoraConfig
    except ImportError as exc:
        raise MissingExtraError(exc.name or "peft", "finetune") from exc
    kwargs = {"task_type": "CAUSAL_LM", **values}
    try:
        cfg = LoraConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a valid peft.LoraConfig: {exc}") from exc
    # vLLM serves plain LoRA on linear layers; these would train an adapter it cannot load.
    if cfg.use_dora:
        raise ValueError("use_dora: vLLM cannot serve DoRA adapters; use plain LoRA")
    if cfg.modules_to_save:
        raise ValueError("modules_to_save: vLLM cannot serve fully trained modules; remove it")
    return cfg


def load_finetune_config(path: Path | str | None = None, settings: Settings | None = None,
                         **overrides: Any) -> FinetuneConfig:
    """Read a job's settings; ``None`` reads ``finetune/lora.yaml`` of the project, if there is one.

    ``overrides`` (e.g. ``base_model=``, ``method=``, ``data=``) replace fields of the
    file; ``None`` values are ignored.
    """
    file: Path | None = Path(path) if path is not None else None
    if file is None and settings is not None and (settings.root / FINETUNE_FILE).is_file():
        file = settings.root / FINETUNE_FILE
    given = {k: v for k, v in overrides.items() if v is not None}
    if file is None:
        return validate_model(given, FinetuneConfig, where="fine-tuning config")
    return load_yaml_model(file, FinetuneConfig, what="fine-tuning config",
                           prepare=lambda raw: {**raw, **given})


def check_servable(config: FinetuneConfig, settings: Settings) -> int:
    """Refuse a LoRA rank above what the serving engine accepts; returns the limit.

    The limit is ``max_lora_rank`` of the config, else ``engine.max_lora_rank`` of the
    environment's ``serving/endpoint.yaml``.
    """
    limit = config.max_lora_rank
    source = "max_lora_rank in the fine-tuning config"
    if limit is None:
        from llmops.serving.config import load_endpoint_config

        limit = load_endpoint_config(settings).engine.max_lora_rank
        source = f"engine.max_lora_rank of serving/endpoint.yaml (environment '{settings.env}')"
    rank = config.lora_rank
    if rank > limit:
        raise FinetuneError(
            f"LoRA rank {rank} is above {limit}, the highest the server accepts ({source}): "
            f"lower lora.r (and any rank_pattern entry) to {limit} or less, or raise the "
            "server's max_lora_rank"
        )
    return limit
