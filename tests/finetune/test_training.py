"""Training paths: the hardware plan, and packed padding-free batches kept apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.errors import FinetuneError
from llmops.finetune import finetune
from llmops.finetune.training import plan_hardware
from tests.finetune.conftest import fast_config


def test_cpu_plan_is_padded_and_bf16_only_where_the_cpu_has_it(monkeypatch) -> None:
    from llmops.finetune import training

    for native in (True, False):
        monkeypatch.setattr(training, "cpu_has_bf16", lambda native=native: native)
        plan = plan_hardware(fast_config())
        assert (plan.device, plan.bf16, plan.packing) == ("cpu", native, False)
        assert plan_hardware(fast_config(bf16=False)).bf16 is False
    with pytest.raises(FinetuneError, match="no GPU and this CPU has no bf16 instructions"):
        plan_hardware(fast_config(bf16=True))
    monkeypatch.setattr(training, "cpu_has_bf16", lambda: True)
    assert plan_hardware(fast_config(bf16=True)).bf16 is True
    assert plan_hardware(fast_config(packing=True)).packing is True
    assert plan_hardware(fast_config(packing=True).model_copy(update={"method": "kto"})).packing is False


def reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, scale):
    """What the varlen flash kernel computes (it needs CUDA): causal attention per sample."""
    import torch
    import torch.nn.functional as F

    rep = q.shape[1] // k.shape[1]
    out = []
    for start, end in zip(cu_q[:-1].tolist(), cu_q[1:].tolist(), strict=True):
        qs, ks, vs = (t[start:end].transpose(0, 1) for t in (q, k, v))
        ks, vs = ks.repeat_interleave(rep, 0), vs.repeat_interleave(rep, 0)
        out.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale)
                   .transpose(0, 1))
    return torch.cat(out)


@pytest.fixture
def cpu_varlen(monkeypatch):
    """The llmops_varlen attention with the kernel replaced by a CPU reference (see above)."""
    from llmops.finetune import attention

    monkeypatch.setattr(attention, "_kernel", lambda: reference_varlen)
    return attention.register_varlen_attention()


def test_packed_rows_do_not_attend_to_each_other(settings, cpu_varlen) -> None:
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from llmops.models import ensure_tiny_model

    path = ensure_tiny_model(settings.models_dir, settings.root / "docs")
    packed_model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=cpu_varlen).eval()
    plain = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa").eval()
    rows = [[5, 6, 7, 8, 9, 10, 11], [20, 21, 22], [30, 31, 32, 33, 34]]
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(
        [{"input_ids": r} for r in rows])
    assert batch["input_ids"].shape == (1, 15) and "attention_mask" not in batch
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "seq_idx")}
    with torch.no_grad():
        packed = packed_model(**inputs, use_cache=False).logits[0]
        alone = [plain(torch.tensor([r]), use_cache=False).logits[0] for r in rows]
        # without sequence boundaries the later rows would see the earlier ones
        leaky = plain(input_ids=batch["input_ids"], use_cache=False).logits[0]
    assert torch.allclose(packed, torch.cat(alone), atol=1e-4)
    assert not torch.allclose(leaky, torch.cat(alone), atol=1e-2)


def test_packed_sft_run_with_varlen_attention(settings, sft_file: Path, cpu_varlen) -> None:
    """The GPU path (packing + llmops_varlen) end to end, on the CPU reference kernel."""
    from mlflow import MlflowClient

    config = fast_config(packing=True, attn_implementation=cpu_varlen, micro_batch_size=2)
    result = finetune(settings, data=sft_file, config=config, progress=False)
    run = MlflowClient().get_run(result.run_id)
    assert run.data.tags["llmops.packing"] == "true"
    assert run.data.tags["llmops.attention"] == "llmops_varlen"
    assert result.metrics["train_tokens"] > 0 and result.version == 1
