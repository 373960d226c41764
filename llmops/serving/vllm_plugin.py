"""A vLLM general plugin (entry point ``vllm.general_plugins``: ``llmops``) that vLLM loads in
each of its processes: the API server, the EngineCore and the workers.

It does one thing, and only where ``LLMOPS_VLLM_NO_BUSY_WAIT=1`` (what
:func:`llmops.models.vllm_cpu_environment` sets for vLLM's CPU build): a process waiting on
vLLM's shared-memory message queue checks it every :data:`NAP_S` seconds, asleep in between,
instead of spinning on ``sched_yield`` (vLLM spins for a second after each read; only a
longer silence puts it to sleep on the queue's notification socket).

The spin saves a GPU step some microseconds. On the CPU build the wait is for a forward pass
that runs on the same cores: the EngineCore spun while its worker computed, and the worker
spun between steps. Profiled in the quick demo on 2 cores (py-spy), the EngineCore spent
177 s of its 229 s of CPU in that spin, beside 276 s of the worker's. A nap of 0.2 ms adds at
most that to a step (a decode step of the tiny model takes milliseconds on a CPU);
``benchmarks/vllm_busy_wait.py`` runs an engine with and without it, side by side.

Waiting on the notification socket from the first wait (``busy_loop_s = 0``) was tried and
dropped: its notifications are lossy (a conflated PUB/SUB pair with a high-water mark of
one), so steps waited for the poll's timeout and decoding fell to under a token a second.
"""

from __future__ import annotations

import os
import time

ENV = "LLMOPS_VLLM_NO_BUSY_WAIT"
NAP_S = 0.0002  # between two looks at the queue

__all__ = ["ENV", "NAP_S", "register"]


def register() -> None:
    """vLLM's entry point: swap the spin for a nap when :data:`ENV` asks for it (a no-op
    otherwise, and on a vLLM whose queue does not spin this way)."""
    if os.environ.get(ENV) != "1":
        return
    try:
        from vllm.distributed.device_communicators import shm_broadcast
    except ImportError:
        return
    spin = getattr(shm_broadcast, "sched_yield", None)
    if spin is None or getattr(spin, "_llmops_nap", False):
        return

    def nap() -> None:
        time.sleep(NAP_S)

    nap._llmops_nap = True  # type: ignore[attr-defined]
    shm_broadcast.sched_yield = nap
