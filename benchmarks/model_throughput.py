"""Output tokens/s of the default model: vLLM (the engine llmops serves) vs transformers ``generate``.

Both sides run SmolLM2-135M-Instruct (``llmops models build smollm2``) on the same
chat prompts (the golden questions, rendered with the model's chat template), greedy,
with the same number of output tokens per prompt (end of sequence ignored), in the
same dtype. transformers runs batches of ``--batch`` left-padded prompts; vLLM gets
all prompts at once (``vllm.LLM.generate``, continuous batching). Each side runs in
its own process, one after the other, so neither competes with the other for the
cores. This is why vLLM is in the stack, shown on the model we ship.

Usage: python benchmarks/model_throughput.py [--prompts 64] [--tokens 64] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _harness import REPO, parser, ratio_table


def _prompts(count: int) -> list[str]:
    rows = [json.loads(x) for x in (REPO / "evals" / "golden.jsonl").read_text().splitlines() if x]
    questions = [r["question"] for r in rows]
    return [questions[i % len(questions)] for i in range(count)]


def _chats(tokenizer, questions: list[str]) -> list[str]:
    return [tokenizer.apply_chat_template(
        [{"role": "system", "content": "You are the llmops documentation assistant."},
         {"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
        for q in questions]


def run_transformers(model_dir: str, dtype: str, prompts: int, tokens: int, batch: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    texts = _chats(tok, _prompts(prompts))
    produced = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), batch):
            enc = tok(texts[i:i + batch], return_tensors="pt", padding=True, add_special_tokens=False)
            out = model.generate(**enc, max_new_tokens=tokens, min_new_tokens=tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id)
            produced += (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
    return {"seconds": time.perf_counter() - start, "tokens": produced}


def run_vllm(model_dir: str, dtype: str, prompts: int, tokens: int, batch: int) -> dict:
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    tok = AutoTokenizer.from_pretrained(model_dir)
    texts = _chats(tok, _prompts(prompts))
    llm = LLM(model=model_dir, dtype=dtype, max_model_len=1024, seed=0)
    params = SamplingParams(temperature=0.0, max_tokens=tokens, min_tokens=tokens, ignore_eos=True)
    llm.generate(texts[:2], params, use_tqdm=False)  # warm-up, as transformers' first batch is not
    start = time.perf_counter()
    outs = llm.generate(texts, params, use_tqdm=False)
    produced = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"seconds": time.perf_counter() - start, "tokens": produced}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=16, help="transformers batch size")
    p.add_argument("--side", choices=["transformers", "vllm"], help=argparse.SUPPRESS)
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    p.add_argument("--dtype", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side:  # one side, in its own process
        run = run_vllm if args.side == "vllm" else run_transformers
        # vLLM prints its own lines on stdout too: the result is the line marked RESULT
        print("RESULT " + json.dumps(run(args.model_dir, args.dtype, args.prompts, args.tokens,
                                         args.batch)), flush=True)
        return

    from llmops.config import load_settings
    from llmops.models import ensure_smollm2
    from llmops.models.devices import resolve_dtype

    model_dir = str(ensure_smollm2(load_settings(root=REPO).models_dir))
    dtype = resolve_dtype("auto")
    dtype = "bfloat16" if dtype == "auto" else dtype
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "VLLM_LOGGING_LEVEL": "WARNING",
           "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
    results = {}
    for side in ("transformers", "vllm"):
        out = subprocess.run(
            [sys.executable, __file__, "--side", side, "--model-dir", model_dir, "--dtype", dtype,
             "--prompts", str(args.prompts), "--tokens", str(args.tokens),
             "--batch", str(args.batch)],
            capture_output=True, text=True, env=env, check=False)
        if out.returncode != 0:
            sys.exit(f"{side} failed:\n{out.stderr[-3000:]}")
        marked = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if not marked:
            sys.exit(f"{side} printed no result:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
        results[side] = json.loads(marked[-1].removeprefix("RESULT "))

    print(f"SmolLM2-135M-Instruct ({dtype}), {args.prompts} prompts x {args.tokens} output tokens, "
          f"greedy; transformers batch {args.batch}")
    ratio_table({side: r["seconds"] for side, r in results.items()},
                {"/transformers": "transformers"},
                items={side: r["tokens"] for side, r in results.items()}, per="tokens/s", width=14)
    rate = {side: r["tokens"] / r["seconds"] for side, r in results.items()}
    speedup = rate["vllm"] / rate["transformers"]
    print(f"vLLM output tokens/s: {speedup:.2f}x transformers'")


if __name__ == "__main__":
    main()
