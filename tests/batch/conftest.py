"""Real Ray for the batch tests: one local Ray for the session (2 CPUs, a small object store).

Workers import this repository's ``tests`` package (their classes are pickled by reference),
so the session's Ray puts the repository on their path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    import ray

    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, object_store_memory=256 * 1024 * 1024, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()
