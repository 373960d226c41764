"""The one batch path: index builds, batch inference and evaluations over tables, on Ray
(local by default, a cluster when ``envs.<env>.ray.address`` or ``$RAY_ADDRESS`` names one)."""

from __future__ import annotations

from llmops.batch.io import committed_ids, input_kind, read_input
from llmops.batch.job import BatchResult, BatchWorker, run_batch
from llmops.batch.runtime import RayInfo, ray_session
from llmops.batch.vllm import engine_model, vllm_stages

__all__ = [
    "BatchResult",
    "BatchWorker",
    "RayInfo",
    "committed_ids",
    "engine_model",
    "input_kind",
    "ray_session",
    "read_input",
    "run_batch",
    "vllm_stages",
]
