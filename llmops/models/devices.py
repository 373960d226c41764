"""What the machine can run: the dtype a model should be served in here, and how vLLM's CPU
build should compile."""

from __future__ import annotations

from functools import cache
from importlib import metadata
from pathlib import Path

__all__ = ["cpu_has_bf16", "resolve_dtype", "vllm_cpu_environment"]


@cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    line = next((x for x in text.splitlines() if x.startswith(("flags", "Features"))), "")
    return frozenset(line.partition(":")[2].split())


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16, AMX or Arm's BF16): there
    bf16 is faster than float32; elsewhere it is emulated, and slower."""
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_dtype(dtype: str) -> str:
    """``auto`` becomes ``float32`` on a machine with no GPU whose CPU has no bf16 instructions.

    vLLM's CPU build runs a bf16 checkpoint (SmolLM2's folder is bf16) in bf16, which such
    a CPU emulates: decoding ran at ~3 tokens/s instead of over a hundred in float32.
    """
    if dtype != "auto" or Path("/dev/nvidiactl").exists():
        return dtype
    if not _cpu_flags() or cpu_has_bf16():
        return dtype
    return "float32"


@cache
def vllm_cpu_environment() -> dict[str, str]:
    """Environment defaults for vLLM's CPU build (nothing for any other build).

    vLLM 0.32's CPU build saves its ahead-of-time compiled model but never loads it back
    ("'function' object has no attribute 'finalize_loading'"), so every start compiled
    the model again. With ``VLLM_USE_AOT_COMPILE=0`` it caches Inductor's output instead
    and a later start loads it: timed here on the tiny model, a start's engine set-up
    (profile, KV cache, warm-up) took 6 s from that cache against 12-30 s recompiling.
    """
    try:
        metadata.distribution("vllm-cpu")
    except metadata.PackageNotFoundError:
        return {}
    return {"VLLM_USE_AOT_COMPILE": "0"}
