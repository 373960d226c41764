"""A lock that serialises read-decide-write sequences on a lakehouse table across processes.

Delta appends never conflict with each other, so two writers that both read a table, decide
and append can each act on a state the other has already changed (two gateways judging one
rollout while ``llmops rollout abort`` ends it). Holding this lock around the whole sequence
makes it atomic for every process on the machine that shares the lakehouse folder.

It is an advisory ``flock`` on a file in ``<lakehouse>/.locks/``: the kernel releases it when
its holder dies, however it dies, so a crash never leaves it held. A lakehouse on object
storage has no such file: there the lock holds nothing, and what keeps writers apart is a
conditional commit (``TableAppender.append(if_unchanged=...)``, which rollouts use on a
folder too).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llmops.errors import LlmopsError
from llmops.lakehouse.location import LakehouseRoot, is_remote

__all__ = ["LakehouseLockTimeout", "lakehouse_lock"]


class LakehouseLockTimeout(LlmopsError):
    """Another process held a lakehouse lock for longer than the caller would wait."""


@contextmanager
def lakehouse_lock(lakehouse: LakehouseRoot, name: str, timeout_s: float = 60.0
                   ) -> Iterator[None]:
    """Hold the lakehouse-wide lock ``name`` for the duration of the block.

    Waits at most ``timeout_s`` for a holder in another process, then raises
    ``LakehouseLockTimeout`` naming the lock file. Not re-entrant within one process. On
    object storage it holds nothing (see the module docstring).
    """
    if is_remote(lakehouse):
        yield
        return
    folder = Path(lakehouse) / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LakehouseLockTimeout(
                        f"another process has held {path} for over {timeout_s:.0f} s; "
                        "try again when it is done") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
