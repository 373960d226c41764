"""Padding-free attention for packed training batches, on PyTorch's own varlen flash kernel.

Packed, padding-free batches (TRL's ``padding_free`` / best-fit packing) are one
long row of samples whose ``position_ids`` restart at every sample; the collator
also passes ``cu_seq_lens_q/k`` and ``max_length_q/k``. FlashAttention's varlen
kernel attends within each sample only, at the cost of the samples alone. The
``flash_attn`` package provides it as ``flash_attention_2``; without that package,
SDPA would need a materialised block-diagonal mask over the whole row and spend
attention FLOPs on every masked block. ``torch.nn.attention.varlen.varlen_attn``
(PyTorch >= 2.10, CUDA) is the same kernel inside PyTorch: this module registers
it with transformers as the ``llmops_varlen`` attention implementation.

Standalone on purpose (imports nothing from llmops), so the GPU benchmark can
load it on a machine that has torch and transformers only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import lru_cache
from typing import Any

__all__ = ["VARLEN_ATTENTION", "register_varlen_attention", "varlen_attention_forward",
           "varlen_kernel_available"]

VARLEN_ATTENTION = "llmops_varlen"


def varlen_kernel_available() -> bool:
    """PyTorch's varlen flash kernel is importable and there is a GPU to run it."""
    try:
        import torch
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@lru_cache(maxsize=1)
def _kernel() -> Callable[..., Any]:
    """``varlen_attn`` called causally on any PyTorch that has it (the keyword changed in 2.11)."""
    from torch.nn.attention.varlen import varlen_attn

    params = inspect.signature(varlen_attn).parameters
    gqa = "enable_gqa" in params

    def causal(q: Any, k: Any, v: Any, cu_q: Any, cu_k: Any, max_q: int, max_k: int,
               scale: float | None) -> Any:
        if k.shape[1] != q.shape[1] and not gqa:
            k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
            v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
        extra: dict[str, Any] = {"enable_gqa": True} if gqa and k.shape[1] != q.shape[1] else {}
        if "window_size" in params:
            extra["window_size"] = (-1, 0)  # causal
        else:
            extra["is_causal"] = True
        if "scale" in params:
            extra["scale"] = scale
        return varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, **extra)

    return causal


def varlen_attention_forward(module: Any, query: Any, key: Any, value: Any,
                             attention_mask: Any, dropout: float = 0.0,
                             scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers' attention-function contract: (B, H, L, D) in, (B, L, H, D) out.

    Sequence boundaries come from ``cu_seq_lens_q/k`` (a packed row), else each
    row of the batch is one whole sequence; a padding mask is refused, because
    this kernel serves padding-free batches.
    """
    import torch

    if attention_mask is not None:
        raise ValueError(f"{VARLEN_ATTENTION} attention takes padding-free batches only; "
                         "this batch carries a padding mask")
    batch, heads, length, dim = query.shape
    cu_q = kwargs.get("cu_seq_lens_q")
    if cu_q is not None:
        if batch != 1:
            raise ValueError(f"{VARLEN_ATTENTION}: a packed batch must be a single row")
        cu_k = kwargs.get("cu_seq_lens_k", cu_q)
        max_q = int(kwargs.get("max_length_q") or int((cu_q[1:] - cu_q[:-1]).max()))
        max_k = int(kwargs.get("max_length_k") or max_q)
    else:
        cu_q = cu_k = torch.arange(0, (batch + 1) * length, length, device=query.device)
        max_q = max_k = length
    cu_q, cu_k = cu_q.to(query.device, torch.int32), cu_k.to(query.device, torch.int32)
    q = query.transpose(1, 2).reshape(batch * length, heads, dim)
    k = key.transpose(1, 2).reshape(batch * length, key.shape[1], dim)
    v = value.transpose(1, 2).reshape(batch * length, value.shape[1], dim)
    out = _kernel()(q, k, v, cu_q, cu_k, max_q, max_k, scaling)
    return out.reshape(batch, length, heads, dim), None


def register_varlen_attention() -> str:
    """Register ``llmops_varlen`` with transformers (idempotent); returns its name.

    Its mask function is FlashAttention's: no mask for padding-free rows.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, flash_attention_mask

    AttentionInterface.register(VARLEN_ATTENTION, varlen_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN_ATTENTION, flash_attention_mask)
    return VARLEN_ATTENTION
