"""Ray for batch work: a local Ray on this machine's cores by default, a cluster when named.

``envs.<env>.ray.address`` in ``llmops.yaml``, else ``$RAY_ADDRESS``, names a running cluster
(``ray start``, KubeRay, Anyscale); without either, a local Ray starts for the job with this
machine's cores and a small object store, and stops after it. Nothing to start by hand.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from llmops.config import Settings
from llmops.errors import BatchError, MissingExtraError

__all__ = ["RayInfo", "ray_session"]


@dataclass(frozen=True)
class RayInfo:
    """The Ray a job runs on: where, how many nodes and CPUs, and whether the job started it."""

    address: str
    nodes: int
    cpus: float
    gpus: float
    started_here: bool


def _import_ray() -> object:
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError("ray", "batch") from exc
    return ray


def _quiet_data() -> None:
    from ray.data import DataContext

    # a job prints its own summary: Ray Data's per-execution INFO lines would interleave
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"ray\.data\..*")

    ctx = DataContext.get_current()
    # the job shows its own progress bar, in rows; Ray Data's per-operator bars would
    # interleave with it
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def _info(started_here: bool) -> RayInfo:
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total = ray.cluster_resources()
    return RayInfo(address=str(ray.get_runtime_context().gcs_address), nodes=len(nodes),
                   cpus=float(total.get("CPU", 0)), gpus=float(total.get("GPU", 0)),
                   started_here=started_here)


@contextlib.contextmanager
def ray_session(settings: Settings) -> Iterator[RayInfo]:
    """Ray for the block: the one already initialised in this process, the configured
    cluster, or a local Ray started now and stopped after the block."""
    _import_ray()
    import ray

    if ray.is_initialized():
        _quiet_data()
        yield _info(started_here=False)
        return
    address = settings.ray.address or os.environ.get("RAY_ADDRESS")
    # Ray 2.60 says on every start that token authentication is on (it stays on)
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.ERROR)
    common = {"logging_level": logging.WARNING, "log_to_driver": False,
              "configure_logging": True}
    try:
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(num_cpus=settings.ray.num_cpus or os.cpu_count() or 1,
                     object_store_memory=settings.ray.object_store_mb * 1024 * 1024,
                     include_dashboard=False, **common)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise BatchError(f"cannot start or reach {where}: {exc}".splitlines()[0]) from exc
    guard = _guard_local_ray() if not address else None
    try:
        _quiet_data()
        yield _info(started_here=True)
    finally:
        try:
            ray.shutdown()
        finally:
            # stopped with Ray, even when the shutdown fails (left running, it would stop this
            # process's other children when this one ends); it ignores SIGTERM by design
            if guard is not None:
                guard.kill()
                guard.wait()


def _guard_local_ray() -> subprocess.Popen[bytes]:
    """A watchdog that stops the local Ray this process started (its GCS, raylet, agents and
    workers, and a worker's vLLM EngineCore) once this process is gone, however it went.

    ``ray.shutdown()`` stops them when the job ends; a ``kill -9`` of the job gives it no
    chance. Ray's workers and services then follow within seconds, but its dashboard and
    runtime-env agents first try to report the raylet's death to the dead GCS and wait 60 s
    for it; with the watchdog nothing outlives the job by more than about its grace period.
    It watches every descendant of this process, so a child this process started for
    something else during the job is stopped with it too (the ``llmops batch run`` driver has
    no others; a notebook's kernel may).
    """
    from llmops.processes import guard_descendants

    return guard_descendants(interval_s=1.0)
