"""The adapter against its base model, on the same rows: greedy answers scored by token F1.

Both sides run in one model: the base is the PEFT model with its adapter
disabled, so the comparison differs in the adapter only. Token F1 is the
evaluation package's scorer (``llmops.evals.scorers.token_f1``), so the numbers
match what ``llmops eval`` reports for chains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops.finetune.data import prompt_messages

__all__ = ["EvalScores", "evaluate_adapter", "generate_answers", "mean_token_f1"]


@dataclass(frozen=True)
class EvalScores:
    """Mean token F1 of the base model and of the adapter on ``rows`` rows."""

    base_token_f1: float
    adapter_token_f1: float
    rows: int
    examples: list[dict[str, Any]] = field(default_factory=list)
    # the share of answers holding the row's key fact, where the rows name one
    base_fact_hit: float | None = None
    adapter_fact_hit: float | None = None


def generate_answers(model: Any, tokenizer: Any, prompts: list[Any], max_new_tokens: int = 48,
                     batch_size: int = 16) -> list[str]:
    """Greedy answers to prompts, rendered with the tokenizer's chat template.

    A prompt is a user message, or the list of ``{"role", "content"}`` messages a
    chain served; the rendering is the one vLLM's chat endpoint applies to them.
    """
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    answers: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start:start + batch_size]
            texts = [tokenizer.apply_chat_template(
                         p if isinstance(p, list) else [{"role": "user", "content": p}],
                         add_generation_prompt=True, tokenize=False)
                     for p in chunk]
            # the chat template writes the special tokens itself
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(device) for k, v in enc.items()}
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=tokenizer.eos_token_id)
            new = out[:, enc["input_ids"].shape[1]:]
            answers.extend(t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
    return answers


def mean_token_f1(answers: list[str], expected: list[str]) -> float:
    from llmops.evals.scorers import token_f1

    if not expected:
        return 0.0
    return sum(token_f1(a, e) for a, e in zip(answers, expected, strict=True)) / len(expected)


def evaluate_adapter(base_path: str, adapter_dir: Path, rows: list[dict[str, Any]], *,
                     max_new_tokens: int = 48, batch_size: int = 16, device: str = "cpu",
                     bf16: bool = False) -> EvalScores:
    """Load base + the saved adapter (as a server would) and score both on ``rows``."""
    from peft import PeftModel

    from llmops.evals.scorers import fact_hit, token_f1
    from llmops.finetune.base_model import load_base_model

    base, tokenizer = load_base_model(base_path, device=device, bf16=bf16)
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    model.eval()
    prompts = [r["prompt"] for r in rows]
    served = [prompt_messages(r) for r in rows]  # scored on what it was trained on
    expected = [r["completion"] for r in rows]
    tuned = generate_answers(model, tokenizer, served, max_new_tokens, batch_size)
    with model.disable_adapter():
        plain = generate_answers(model, tokenizer, served, max_new_tokens, batch_size)
    facts = [r.get("fact") for r in rows]
    examples = [
        {"prompt": p, "expected": e, "base_answer": b, "adapter_answer": a,
         "base_token_f1": token_f1(b, e), "adapter_token_f1": token_f1(a, e),
         **({"fact": f, "base_fact_hit": fact_hit(b, f), "adapter_fact_hit": fact_hit(a, f)}
            if f else {})}
        for p, e, b, a, f in zip(prompts, expected, plain, tuned, facts, strict=True)
    ]
    with_fact = [x for x in examples if "fact" in x]
    return EvalScores(
        base_token_f1=mean_token_f1(plain, expected),
        adapter_token_f1=mean_token_f1(tuned, expected),
        rows=len(rows),
        examples=examples,
        base_fact_hit=(sum(x["base_fact_hit"] for x in with_fact) / len(with_fact)
                       if with_fact else None),
        adapter_fact_hit=(sum(x["adapter_fact_hit"] for x in with_fact) / len(with_fact)
                          if with_fact else None),
    )
