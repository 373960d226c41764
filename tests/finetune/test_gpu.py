"""The GPU path, on the accelerator machine: bf16, packed padding-free batches, a varlen kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.finetune import finetune
from tests.finetune.conftest import fast_config

pytestmark = pytest.mark.gpu


def test_pytorch_varlen_kernel_keeps_packed_rows_apart() -> None:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from llmops.finetune.attention import register_varlen_attention, varlen_kernel_available

    if not varlen_kernel_available():
        pytest.skip("this PyTorch has no torch.nn.attention.varlen")
    config = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    packed_model = AutoModelForCausalLM.from_config(
        config, dtype=torch.bfloat16, attn_implementation=register_varlen_attention()).cuda().eval()
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16,
                                             attn_implementation="sdpa").cuda().eval()
    plain.load_state_dict(packed_model.state_dict())
    rows = [torch.randint(3, 500, (n,)) for n in (37, 12, 64)]
    lengths = torch.tensor([len(r) for r in rows])
    cu = torch.cat([torch.zeros(1, dtype=torch.int32), lengths.cumsum(0).int()]).cuda()
    with torch.no_grad():
        packed = packed_model(
            input_ids=torch.cat(rows)[None].cuda(),
            position_ids=torch.cat([torch.arange(n) for n in lengths])[None].cuda(),
            cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=64, max_length_k=64,
            use_cache=False).logits[0].float()
        alone = torch.cat([plain(r[None].cuda(), use_cache=False).logits[0] for r in rows]).float()
    assert (packed - alone).abs().max().item() < 0.05  # bf16


def test_sft_run_on_the_gpu(settings, sft_file: Path) -> None:
    from mlflow import MlflowClient

    result = finetune(settings, data=sft_file, config=fast_config(epochs=3), progress=False)
    tags = MlflowClient().get_run(result.run_id).data.tags
    assert (tags["llmops.device"], tags["llmops.bf16"]) == ("cuda", "true")
    assert tags["llmops.packing"] == "true"
    assert tags["llmops.attention"] in ("flash_attention_2", "llmops_varlen")
    assert result.metrics["peak_gpu_memory_bytes"] > 0 and result.version == 1
