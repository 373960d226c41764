"""A random-weight Llama of about 1B parameters, built from a config (no hub), for the H200 run.

hidden 2048, 16 layers, 32 heads, 8 KV heads, intermediate 8192, vocab 32,000 (the
ENVIRONMENT.md reference model), bf16, with the offline tiny model's tokenizer and
chat template (trained from docs/), so vLLM, PEFT and the chains load it like any model.

Usage: python benchmarks/gpu/build_model.py --out /tmp/llama-1b [--layers 16]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def build(out: Path, layers: int = 16, hidden: int = 2048, vocab: int = 32000,
          heads: int = 32, kv_heads: int = 8) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from llmops.models import ensure_tiny_model

    tiny = ensure_tiny_model(REPO / ".llmops" / "models", REPO / "docs")
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    config = LlamaConfig(
        vocab_size=max(vocab, len(tokenizer)), hidden_size=hidden, intermediate_size=4 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    print(f"built {out}: {params / 1e9:.2f}B parameters, {layers} layers, hidden {hidden}")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    args = p.parse_args()
    build(args.out, args.layers, args.hidden, heads=args.heads, kv_heads=args.kv_heads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
