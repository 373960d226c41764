"""LoRA SFT throughput: a plain ``transformers.Trainer`` + PEFT baseline against the job's settings.

Both sides train the same LoRA adapter (r=16 on the q/k/v/o/gate/up/down projections)
on the same random-weight model built from a config (no model hub), in bf16, on
the same samples: token sequences of mixed lengths up to --seq-len, the shape of
chat SFT data.

- baseline: ``transformers.Trainer`` with ``peft.get_peft_model`` and default
  settings: padded batches (``DataCollatorForLanguageModeling``), micro-batch 4,
  the default attention;
- ours (what ``llmops finetune run`` does on a GPU): TRL's ``SFTTrainer`` with
  best-fit packing into padding-free batches attended by a varlen flash kernel
  (FlashAttention 2 when ``flash_attn`` is installed, else PyTorch's own
  ``varlen_attn`` through ``llmops/finetune/attention.py``), so samples never
  attend to each other (checked first) and no FLOP is spent on padding; a larger
  micro-batch; and TRL's fused LM head (log-probs in chunks, never the full logits).

Tokens/s counts real (non-padding) tokens after --warmup steps. MFU uses the H200's
dense bf16 peak (989 TFLOPS) and LoRA's training FLOPs per token: 4 N (forward and
the input-gradient backward through frozen weights; no weight gradients) plus
causal attention. It prints both sides, the ratio and peak memory, and writes JSON.

  python benchmarks/finetune_throughput.py [--arch llama|qwen2] [--seq-len 2048] [--json-out FILE]
  python benchmarks/finetune_throughput.py --smoke      # tiny model on the CPU, < 1 minute

Needs torch, transformers, peft, trl and datasets (and a GPU, except with --smoke).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

from _harness import parser, write_json

H200_BF16_DENSE_FLOPS = 989e12

ARCHS: dict[str, dict[str, Any]] = {
    # ~1.1B parameters, Llama-3.2-1B-like proportions (vocab 32k)
    "llama": {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632,
              "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
              "vocab_size": 32000},
    # ~1.5B parameters, the shape of Qwen2.5-1.5B (a 152k vocabulary: the LM head dominates)
    "qwen2": {"model_type": "qwen2", "hidden_size": 1536, "intermediate_size": 8960,
              "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
              "vocab_size": 151936},
    "smoke": {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
              "vocab_size": 512},
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_model(arch: str, seq_len: int, dtype: Any, attn: str | None) -> Any:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = dict(ARCHS[arch])
    model_type = shape.pop("model_type")
    config = AutoConfig.for_model(model_type, max_position_embeddings=max(seq_len, 2048),
                                  tie_word_embeddings=False, **shape)
    torch.manual_seed(0)
    kwargs = {"attn_implementation": attn} if attn else {}
    return AutoModelForCausalLM.from_config(config, dtype=dtype, **kwargs)


def make_samples(n: int, seq_len: int, vocab: int, seed: int) -> list[list[int]]:
    """Token sequences with lengths spread between seq_len / 16 and seq_len."""
    rng = random.Random(seed)
    low = max(8, seq_len // 16)
    return [[rng.randrange(3, vocab) for _ in range(rng.randint(low, seq_len))] for _ in range(n)]


def lora_config() -> Any:
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS,
                      task_type="CAUSAL_LM")


def flops_per_token(model: Any, mean_ctx: float) -> float:
    """LoRA training FLOPs per token: 2N forward + 2N input gradients + causal attention (x2)."""
    cfg = model.config
    n = sum(p.numel() for p in model.parameters())
    attn_fwd = 2 * cfg.num_hidden_layers * cfg.hidden_size * mean_ctx  # QK^T and AV, causal half
    return 4 * n + 2 * attn_fwd


def timed(trainer_cls: type, warmup: int, count: Any) -> type:
    """``trainer_cls`` that times steps after ``warmup`` and counts their real tokens."""
    import torch

    class Timed(trainer_cls):  # type: ignore[misc, valid-type]
        t0: float | None = None
        tokens = 0

        def training_step(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            if self.state.global_step == warmup and self.t0 is None:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self.t0 = time.perf_counter()
            out = super().training_step(model, inputs, *args, **kwargs)
            if self.t0 is not None:
                self.tokens += count(inputs)
            return out

        def measured(self) -> tuple[float, int]:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            return time.perf_counter() - (self.t0 or time.perf_counter()), self.tokens

    return Timed


def real_tokens_padded(inputs: dict[str, Any]) -> int:
    return int(inputs["attention_mask"].sum())


def real_tokens_packed(inputs: dict[str, Any]) -> int:
    return int(inputs["input_ids"].numel())  # padding-free: one row, no padding


def peak_memory() -> int:
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def reset_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def common_args(a: argparse.Namespace, out: str, micro_batch: int, gpu: bool) -> dict[str, Any]:
    return {"output_dir": out, "max_steps": a.steps, "per_device_train_batch_size": micro_batch,
            "learning_rate": 2e-4, "bf16": gpu, "logging_steps": 10_000, "save_strategy": "no",
            "report_to": "none", "disable_tqdm": True, "use_cpu": not gpu, "seed": 0,
            "dataloader_drop_last": True}


def run_baseline(a: argparse.Namespace, samples: list[list[int]], gpu: bool) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import (
        DataCollatorForLanguageModeling,
        PreTrainedTokenizerFast,
        Trainer,
        TrainingArguments,
    )

    reset_memory()
    model = build_model(a.arch, a.seq_len, torch.bfloat16 if gpu else torch.float32, None)
    model = get_peft_model(model, lora_config())
    tok = _tokenizer(PreTrainedTokenizerFast)
    data = Dataset.from_dict({"input_ids": samples})
    args = TrainingArguments(**common_args(a, a.workdir + "/baseline", a.baseline_micro_batch, gpu))
    trainer = timed(Trainer, a.warmup, real_tokens_padded)(
        model=model, args=args, train_dataset=data,
        data_collator=DataCollatorForLanguageModeling(tok, mlm=False))
    trainer.train()
    seconds, tokens = trainer.measured()
    result = _result("baseline: Trainer + PEFT, padded", model, samples, seconds, tokens)
    result["micro_batch"] = a.baseline_micro_batch
    result["attention"] = model.config._attn_implementation
    del trainer, model
    return result


def run_ours(a: argparse.Namespace, samples: list[list[int]], gpu: bool) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import PreTrainedTokenizerFast
    from trl import SFTConfig, SFTTrainer

    reset_memory()
    attn = ours_attention(gpu)
    model = build_model(a.arch, a.seq_len, torch.bfloat16 if gpu else torch.float32, attn)
    tok = _tokenizer(PreTrainedTokenizerFast)
    data = Dataset.from_dict({"input_ids": samples})
    args = SFTConfig(**common_args(a, a.workdir + "/ours", a.micro_batch, gpu), packing=True,
                     packing_strategy="bfd", max_length=a.seq_len)
    trainer = timed(SFTTrainer, a.warmup, real_tokens_packed)(
        model=model, args=args, train_dataset=data, processing_class=tok,
        peft_config=lora_config())
    trainer.train()
    seconds, tokens = trainer.measured()
    result = _result("ours: SFTTrainer, packed padding-free", trainer.model, samples, seconds, tokens)
    result["micro_batch"] = a.micro_batch
    result["attention"] = attn
    del trainer, model
    return result


def _tokenizer(cls: type) -> Any:
    """A stand-in tokenizer (ids are pre-made): the trainers only need its pad token."""
    from tokenizers import Tokenizer, models

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2}
    tok = cls(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<pad>")),
              pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    return tok


def _result(name: str, model: Any, samples: list[list[int]], seconds: float, tokens: int
            ) -> dict[str, Any]:
    mean_ctx = sum(len(s) for s in samples) / len(samples) / 2  # a token attends to half its sample
    tps = tokens / seconds if seconds > 0 else 0.0
    fpt = flops_per_token(model, mean_ctx)
    return {"name": name, "tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_s": round(tps, 1), "mfu": round(tps * fpt / H200_BF16_DENSE_FLOPS, 4),
            "peak_memory_gib": round(peak_memory() / 2**30, 2)}


def ours_attention(gpu: bool) -> str:
    """The job's choice: FlashAttention 2 if installed, else PyTorch's varlen kernel, else SDPA."""
    if not gpu:
        return "sdpa"
    try:
        import flash_attn  # noqa: F401

        return "flash_attention_2"
    except ImportError:
        pass
    # llmops/finetune/attention.py, loaded by path: it needs torch and transformers only
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "llmops" / "finetune" / "attention.py"
    spec = importlib.util.spec_from_file_location("llmops_finetune_attention", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    if module.varlen_kernel_available():
        return module.register_varlen_attention()
    return "sdpa"


def isolation_check(a: argparse.Namespace, gpu: bool) -> float:
    """A packed padding-free batch gives each sample the logits it gets alone."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    dtype = torch.bfloat16 if gpu else torch.float32
    device = "cuda" if gpu else "cpu"
    arch = "smoke" if a.smoke else a.arch
    packed_model = build_model(arch, 256, dtype, ours_attention(gpu)).to(device).eval()
    plain = build_model(arch, 256, dtype, "sdpa").to(device).eval()
    rows = [[int(t) for t in torch.randint(3, 500, (n,))] for n in (40, 24, 9)]
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(
        [{"input_ids": r} for r in rows])
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v
              for k, v in batch.items() if k not in ("labels", "seq_idx")}
    with torch.no_grad():
        packed = packed_model(**inputs, use_cache=False).logits[0].float()
        alone = torch.cat([plain(torch.tensor([r], device=device), use_cache=False).logits[0]
                           for r in rows]).float()
    del packed_model, plain
    return float((packed - alone).abs().max())


def main() -> None:
    p = parser(__doc__, json_out=True)
    p.add_argument("--arch", choices=["llama", "qwen2"], default="llama")
    p.add_argument("--seq-len", type=int, default=2048, help="longest sample (tokens)")
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per side")
    p.add_argument("--warmup", type=int, default=5, help="steps not timed")
    p.add_argument("--micro-batch", type=int, default=8, help="ours: packed rows per step")
    p.add_argument("--baseline-micro-batch", type=int, default=4)
    p.add_argument("--workdir", default="/tmp/finetune-bench")
    p.add_argument("--smoke", action="store_true", help="a tiny model on the CPU (< 1 minute)")
    a = p.parse_args()

    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    gpu = torch.cuda.is_available() and not a.smoke
    if a.smoke:
        a.arch, a.seq_len, a.samples, a.steps, a.warmup = "smoke", 128, 96, 6, 1
        a.micro_batch, a.baseline_micro_batch = 4, 4
    elif not gpu:
        sys.exit("needs a CUDA GPU (or --smoke for a CPU check)")
    samples = make_samples(a.samples, a.seq_len, ARCHS[a.arch]["vocab_size"], seed=0)

    delta = isolation_check(a, gpu)
    print(f"packing isolation: max |logit difference| packed vs alone = {delta:.2e}")
    baseline = run_baseline(a, samples, gpu)
    ours = run_ours(a, samples, gpu)
    ratio = ours["tokens_per_s"] / baseline["tokens_per_s"] if baseline["tokens_per_s"] else 0.0
    device = torch.cuda.get_device_name(0) if gpu else "cpu"
    print(f"{a.arch} ({sum(len(s) for s in samples) / len(samples):.0f} tokens/sample on average, "
          f"max {a.seq_len}) on {device}, {a.steps - a.warmup} timed steps per side")
    for r in (baseline, ours):
        print(f"  {r['name']:<42} {r['tokens_per_s']:>10,.0f} tokens/s  MFU {r['mfu']:.1%}  "
              f"peak {r['peak_memory_gib']:.1f} GiB  (micro-batch {r['micro_batch']}, "
              f"{r['attention']})")
    print(f"  ratio ours / baseline: {ratio:.2f}x")
    write_json(a.json_out, {"arch": a.arch, "seq_len": a.seq_len, "samples": a.samples,
                            "steps": a.steps, "warmup": a.warmup, "device": device,
                            "isolation_max_abs_diff": delta, "baseline": baseline, "ours": ours,
                            "ratio": ratio})


if __name__ == "__main__":
    main()
