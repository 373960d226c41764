"""Train a LoRA adapter with TRL: ``SFTTrainer`` (loss on completions only) or ``KTOTrainer``.

Rows are given to TRL in conversational prompt/completion form, so the trainer
renders them with the base model's chat template and masks the prompt tokens
(SFT's ``completion_only_loss`` is on for prompt/completion data; set here
explicitly). KTO's reference model is the base itself: with a PEFT model, TRL
computes reference log-probabilities with the adapter disabled.

On a GPU: bf16, and SFT rows packed best-fit into padding-free batches whose
``position_ids`` and ``cu_seq_lens`` restart at every row, attended by a varlen
flash kernel (FlashAttention 2, else PyTorch's own, see ``attention.py``), which
keeps rows from attending to each other at no extra cost. TRL computes the loss
through its fused, chunked LM head. On the CPU: padded batches, in bf16 where the CPU has
bf16 instructions (AVX512-BF16 or AMX; a training step of SmolLM2-135M took 0.57 of its
float32 time on 2 such cores), else in float32. Every logged step goes to the MLflow run as
``train/<name>`` metrics.
"""

from __future__ import annotations

import gc
import os
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.errors import FinetuneError, MissingExtraError, OutOfMemoryError
from llmops.finetune.base_model import BaseModelRef, load_base_model, pick_device
from llmops.finetune.config import FinetuneConfig
from llmops.finetune.data import TrainingData, as_chat
from llmops.models.devices import cpu_has_bf16
from llmops.registry.adapters import ADAPTER_FILES

__all__ = ["ADAPTER_FILES", "HardwarePlan", "TrainStats", "plan_hardware", "train_adapter"]



@dataclass(frozen=True)
class HardwarePlan:
    """What the job runs on, decided once from the config and the machine."""

    device: str
    bf16: bool
    packing: bool
    attn_implementation: str | None


@dataclass(frozen=True)
class TrainStats:
    """What a training run measured."""

    steps: int
    runtime_s: float
    tokens: int
    tokens_per_s: float
    final_loss: float | None
    eval_loss: float | None
    peak_gpu_memory_bytes: int
    peak_rss_bytes: int
    is_main_process: bool

    def metrics(self) -> dict[str, float]:
        out = {"train_steps": float(self.steps), "train_runtime_s": self.runtime_s,
               "train_tokens": float(self.tokens), "train_tokens_per_s": self.tokens_per_s,
               "peak_gpu_memory_bytes": float(self.peak_gpu_memory_bytes),
               "peak_rss_bytes": float(self.peak_rss_bytes)}
        if self.final_loss is not None:
            out["train_final_loss"] = self.final_loss
        if self.eval_loss is not None:
            out["eval_loss"] = self.eval_loss
        return out


def _flash_attn_installed() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def plan_hardware(config: FinetuneConfig) -> HardwarePlan:
    """What runs where: bf16, packing and a varlen attention kernel with a GPU; on the CPU,
    bf16 where it has bf16 instructions (else float32) and padded batches.

    Packing defaults to on only where a varlen kernel keeps packed samples apart at
    their own cost: FlashAttention 2 (the ``flash_attn`` package), else PyTorch's
    varlen flash kernel (``attention.py``). Without one, SDPA would need a block
    mask over the whole packed row: correct, but slower than padding.
    """
    import torch

    from llmops.finetune.attention import register_varlen_attention, varlen_kernel_available

    device = pick_device()
    t = config.training
    native = torch.cuda.is_bf16_supported() if device == "cuda" else cpu_has_bf16()
    bf16 = t.bf16 if t.bf16 is not None else native
    if bf16 and device != "cuda" and not native:
        raise FinetuneError("training.bf16 is on but there is no GPU and this CPU has no bf16 "
                            "instructions (AVX512-BF16 or AMX), so bf16 would be emulated and "
                            "slower than float32: set it to false or leave it unset")
    attn = t.attn_implementation
    varlen = device == "cuda" and (_flash_attn_installed() or varlen_kernel_available())
    packing = bool(t.packing if t.packing is not None else varlen) and config.method == "sft"
    if attn is None and device == "cuda":
        if _flash_attn_installed():
            attn = "flash_attention_2"
        elif packing and varlen_kernel_available():
            attn = register_varlen_attention()
    elif attn is not None and attn == "llmops_varlen":
        register_varlen_attention()
    return HardwarePlan(device=device, bf16=bool(bf16), packing=packing, attn_implementation=attn)


def _step_logger(run_id: str | None, flush_every_s: float = 5.0) -> Any:
    """A Trainer callback sending each logged step to the MLflow run (main process only).

    Steps are buffered and sent every few seconds and at the end: one store round
    trip per step would slow a fast GPU step down by several percent.
    """
    from transformers import TrainerCallback

    class MlflowSteps(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.pending: list[Any] = []
            self.last = time.monotonic()

        def flush(self) -> None:
            if self.pending and run_id:
                from mlflow import MlflowClient

                MlflowClient().log_batch(run_id, metrics=self.pending)
            self.pending, self.last = [], time.monotonic()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            # the end-of-training summary is logged by the job as train_* metrics
            if not run_id or not state.is_world_process_zero or not logs or "train_runtime" in logs:
                return
            from mlflow.entities import Metric

            stamp = int(time.time() * 1000)
            self.pending += [
                Metric(f"eval/{k[5:]}" if k.startswith("eval_") else f"train/{k}", float(v), stamp,
                       state.global_step)
                for k, v in logs.items() if isinstance(v, (int, float)) and k != "epoch"
            ]
            if time.monotonic() - self.last >= flush_every_s:
                self.flush()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.flush()

        def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.flush()

    return MlflowSteps()


def _fsdp_args(config: FinetuneConfig) -> dict[str, Any]:
    """FSDP for the Trainer itself, when no ``accelerate launch --use_fsdp`` configured it."""
    dist = config.distributed
    if dist.strategy != "fsdp" or os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return {}
    f = dist.fsdp
    fsdp_config: dict[str, Any] = {
        "version": f.version, "auto_wrap_policy": f.auto_wrap_policy,
        "cpu_offload": f.offload_params, "state_dict_type": f.state_dict_type,
        "activation_checkpointing": f.activation_checkpointing,
        "cpu_ram_efficient_loading": f.cpu_ram_efficient_loading,
        "reshard_after_forward": f.sharding_strategy != "SHARD_GRAD_OP",
    }
    if f.transformer_layer_cls_to_wrap:
        fsdp_config["transformer_layer_cls_to_wrap"] = [f.transformer_layer_cls_to_wrap]
    return {"fsdp": True, "fsdp_config": fsdp_config}


def _trainer_args(config: FinetuneConfig, plan: HardwarePlan, work_dir: Path, progress: bool
                  ) -> Any:
    t = config.training
    common: dict[str, Any] = {
        "output_dir": str(work_dir / "trainer"),
        "num_train_epochs": t.epochs,
        "learning_rate": t.learning_rate,
        "per_device_train_batch_size": t.micro_batch_size,
        "per_device_eval_batch_size": t.micro_batch_size,
        "gradient_accumulation_steps": t.grad_accumulation,
        "warmup_steps": t.warmup_ratio,
        "lr_scheduler_type": t.lr_scheduler,
        "weight_decay": t.weight_decay,
        "max_grad_norm": t.max_grad_norm,
        "seed": t.seed,
        "data_seed": t.seed,
        "bf16": plan.bf16,
        "gradient_checkpointing": t.gradient_checkpointing,
        "logging_steps": t.logging_steps,
        "logging_first_step": True,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": not progress,
        "use_cpu": plan.device == "cpu",
        "max_length": t.max_seq_len,
        **_fsdp_args(config),
    }
    if config.distributed.strategy == "ddp":
        common["ddp_find_unused_parameters"] = False  # only the adapter's weights train
    if config.method == "sft":
        from trl import SFTConfig

        return SFTConfig(**common, completion_only_loss=True, packing=plan.packing,
                         packing_strategy="bfd")
    from trl import KTOConfig

    if t.micro_batch_size < 2:
        raise FinetuneError("KTO needs training.micro_batch_size of 2 or more: it estimates its "
                            "KL term from mismatched pairs within a micro-batch")
    return KTOConfig(**common, beta=t.kto_beta)


def _peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def _oom_advice(config: FinetuneConfig, plan: HardwarePlan) -> str:
    t = config.training
    return (
        f"the GPU ran out of memory while training (micro_batch_size={t.micro_batch_size}, "
        f"max_seq_len={t.max_seq_len}, packing={plan.packing}, gradient_checkpointing="
        f"{t.gradient_checkpointing}): lower training.micro_batch_size (raise grad_accumulation to "
        "keep the effective batch), lower training.max_seq_len, or turn on "
        "training.gradient_checkpointing; no model version was registered"
    )


def train_adapter(config: FinetuneConfig, data: TrainingData, base: BaseModelRef, out_dir: Path,
                  work_dir: Path, *, run_id: str | None = None, progress: bool = True) -> TrainStats:
    """Train the adapter and save it to ``out_dir`` as a plain PEFT adapter folder.

    ``out_dir`` holds only ``adapter_config.json`` and ``adapter_model.safetensors``:
    what vLLM loads. Under a multi-process launch every process trains; the main
    process saves.
    """
    try:
        import torch
        from datasets import Dataset
        from trl import KTOTrainer, SFTTrainer
    except ImportError as exc:
        raise MissingExtraError(exc.name or "trl", "finetune") from exc

    plan = plan_hardware(config)
    args = _trainer_args(config, plan, work_dir, progress)
    if plan.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer = model = None
    steps = _step_logger(run_id)
    try:
        model, tokenizer = load_base_model(
            base.path, spec=base.spec, device=plan.device, bf16=plan.bf16,
            attn_implementation=plan.attn_implementation, place=False,
        )
        train_set = Dataset.from_list(as_chat(data.train, config.method))
        eval_set = (Dataset.from_list(as_chat(data.heldout, config.method))
                    if data.heldout and config.method == "sft" else None)
        trainer_cls = SFTTrainer if config.method == "sft" else KTOTrainer
        trainer = trainer_cls(
            model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
            processing_class=tokenizer, peft_config=config.lora_config(),
            callbacks=[steps],
        )
        if not progress:
            from transformers import PrinterCallback

            trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        result = trainer.train()
        runtime = time.perf_counter() - started
        eval_loss = None
        if eval_set is not None:
            eval_loss = float(trainer.evaluate().get("eval_loss", float("nan")))
        saved = work_dir / "saved-adapter"
        trainer.save_model(str(saved))
        is_main = bool(trainer.is_world_process_zero())
        history = trainer.state.log_history
    except torch.OutOfMemoryError as exc:
        raise OutOfMemoryError(_oom_advice(config, plan)) from exc
    except (RuntimeError, ValueError) as exc:
        if "out of memory" in str(exc).lower():
            raise OutOfMemoryError(_oom_advice(config, plan)) from exc
        raise FinetuneError(f"training failed: {exc.__class__.__name__}: {exc}".splitlines()[0]) from exc
    finally:
        trainer = model = None
        gc.collect()
        if plan.device == "cuda":
            torch.cuda.empty_cache()

    if is_main:
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        for name in ADAPTER_FILES:
            if not (saved / name).is_file():
                raise FinetuneError(f"training saved no {name}: the adapter is incomplete")
            shutil.copy2(saved / name, out_dir / name)
    tokens = int(max((h.get("num_tokens", 0) for h in history), default=0))
    losses = [h["loss"] for h in history if "loss" in h]
    return TrainStats(
        steps=int(result.global_step),
        runtime_s=runtime,
        tokens=tokens,
        tokens_per_s=tokens / runtime if runtime > 0 else 0.0,
        final_loss=float(losses[-1]) if losses else None,
        eval_loss=eval_loss,
        peak_gpu_memory_bytes=int(torch.cuda.max_memory_allocated()) if plan.device == "cuda" else 0,
        peak_rss_bytes=_peak_rss_bytes(),
        is_main_process=is_main,
    )
