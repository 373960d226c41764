"""Child processes that serve something: start one, wait until it is ready, stop its whole tree.

The engine, the demo's ``llmops serve``, the benchmarks and the tests all start a server as a
subprocess and wait for it to answer. They share these helpers so that every wait has a
deadline, fails at once when the process has exited, and says what it waited for with the
tail of the process's log; and so that a stop leaves no child behind (SIGTERM to the process
and its descendants, a grace period, then SIGKILL). A child started with
``die_with_parent=True`` is sent SIGTERM by the kernel when its parent dies, however it dies
(``kill -9`` included), so it cannot outlive a parent that had no chance to stop it.

Errors are :class:`~llmops.errors.LlmopsError` unless the caller names a subclass of its own
(``error=EngineError``), so a caller's error tree stays its own.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import psutil

from llmops.errors import LlmopsError

__all__ = [
    "die_with_parent",
    "free_port",
    "guard_descendants",
    "http_status",
    "log_tail",
    "running",
    "start_process",
    "stop_process_tree",
    "wait_ended",
    "wait_for_http",
    "wait_until",
]

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Ask the kernel to send this process ``signum`` when its parent dies (Linux's
    ``PR_SET_PDEATHSIG``; elsewhere nothing happens). The parent here is the thread that
    started the process: start such children from a thread that lives as long as they should.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux
        pass


def start_process(cmd: Sequence[str], log_path: Path, *, cwd: Path | None = None,
                  env: Mapping[str, str] | None = None, append: bool = True,
                  new_session: bool = False,
                  with_parent: bool = False) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with its stdout and stderr going to ``log_path`` (created with its folder).

    ``append=False`` starts the log afresh; ``new_session=True`` puts the process in a session
    (and process group) of its own, so that a terminal's Ctrl-C does not reach it;
    ``with_parent=True`` has the kernel send it SIGTERM when this process (the calling thread,
    see :func:`die_with_parent`) dies, however it dies.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab" if append else "wb") as log:
        return subprocess.Popen(list(cmd), cwd=cwd, env=None if env is None else dict(env),
                                stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=new_session,
                                preexec_fn=die_with_parent if with_parent else None)  # noqa: PLW1509


def log_tail(log_path: Path | None, chars: int = 3000) -> str:
    """The last ``chars`` characters of a log ("" when there is none)."""
    if log_path is None:
        return ""
    try:
        return Path(log_path).read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _with_log(message: str, log_path: Path | None) -> str:
    tail = log_tail(log_path)
    if log_path is None:
        return message
    return f"{message}; its log ({log_path}) ends with:\n{tail}" if tail else \
        f"{message}; its log ({log_path}) is empty"


def wait_until(condition: Callable[[], T], *, timeout: float, what: str,
               proc: subprocess.Popen[bytes] | None = None, log_path: Path | None = None,
               interval: float = 0.2, error: type[Exception] = LlmopsError) -> T:
    """Call ``condition`` every ``interval`` seconds until it returns a true value; return it.

    Raises ``error`` when ``timeout`` seconds pass first, or at once when ``proc`` (the process
    that should make the condition true) has exited; the message names ``what`` was awaited
    (a phrase: "the engine to answer with its key") and ends with the tail of ``log_path``.
    An exception ``condition`` raises goes through unchanged.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise error(_with_log(f"the process {proc.pid} exited with status {proc.returncode} "
                                  f"while waiting for {what}", log_path))
        value = condition()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise error(_with_log(f"timed out after {timeout:.0f} s waiting for {what}", log_path))
        time.sleep(min(interval, left))


def http_status(url: str, *, headers: Mapping[str, str] | None = None,
                timeout: float = 2.0) -> int | None:
    """The HTTP status of ``GET url`` (an error status included); None when nothing answers."""
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def wait_for_http(url: str, *, timeout: float, proc: subprocess.Popen[bytes] | None = None,
                  log_path: Path | None = None, headers: Mapping[str, str] | None = None,
                  status: int = 200, interval: float = 0.5, what: str | None = None,
                  error: type[Exception] = LlmopsError) -> None:
    """Wait until ``GET url`` answers ``status`` (see :func:`wait_until` for the failures)."""
    wait_until(lambda: http_status(url, headers=headers) == status, timeout=timeout,
               what=what or f"{url} to answer {status}", proc=proc, log_path=log_path,
               interval=interval, error=error)


def running(proc: psutil.Process | int) -> bool:
    """Whether a process (a :class:`psutil.Process`, or a pid) still runs.

    A zombie does not: it has ended and only waits for its parent (or, once orphaned, the
    pid-1 process, which in a container may never reap it) to collect its exit status. A
    :class:`psutil.Process` that was noted earlier is matched by pid and start time, so a pid
    reused since is not taken for it.
    """
    try:
        if not isinstance(proc, psutil.Process):
            proc = psutil.Process(proc)
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_ended(procs: Sequence[psutil.Process], timeout: float,
               interval: float = 0.2) -> list[psutil.Process]:
    """Wait up to ``timeout`` seconds for ``procs`` to end; return those still running.

    Like :func:`psutil.wait_procs`, but a zombie counts as ended (see :func:`running`), so an
    orphan that nobody reaps costs no wait; one that is this process's own child is reaped.
    """
    deadline = time.monotonic() + timeout
    left = list(procs)
    while True:
        left = [p for p in left if _still_running(p)]
        remaining = deadline - time.monotonic()
        if not left or remaining <= 0:
            return left
        _, left = psutil.wait_procs(left, timeout=min(interval, remaining))


def _still_running(proc: psutil.Process) -> bool:
    """:func:`running`; an ended process that is this process's child is reaped (else it
    would stay a zombie until this process exits)."""
    if running(proc):
        return True
    try:
        if proc.ppid() == os.getpid():
            os.waitpid(proc.pid, os.WNOHANG)
    except (psutil.Error, OSError):
        pass
    return False


def stop_process_tree(proc: subprocess.Popen[bytes] | int, *, grace_s: float = 10.0,
                      kill_wait_s: float = 5.0) -> int | None:
    """SIGTERM a process and its descendants, SIGKILL what is left after ``grace_s``.

    ``proc`` is a :class:`subprocess.Popen` (then reaped, and its exit status returned) or a
    pid (None returned). Descendants are those alive when the stop begins; a process that
    is already gone is no error.
    """
    popen = proc if isinstance(proc, subprocess.Popen) else None
    pid = popen.pid if popen is not None else int(proc)
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for member in tree:
        try:
            member.terminate()
        except psutil.NoSuchProcess:
            pass
    # our own child is waited for through Popen, which keeps its exit status
    others = [m for m in tree if popen is None or m.pid != pid]
    deadline = time.monotonic() + grace_s
    if popen is not None:
        try:
            popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            popen.kill()
    alive = wait_ended(others, timeout=max(0.0, deadline - time.monotonic()))
    for member in alive:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    wait_ended(alive, timeout=kill_wait_s)
    if popen is None:
        return None
    try:
        return popen.wait(timeout=kill_wait_s)
    except subprocess.TimeoutExpired:
        return None


def guard_descendants(interval_s: float = 0.5, grace_s: float = 5.0,
                      report: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a watchdog that stops this process's descendants once this process is gone.

    For a process that starts children it does not control and that may be killed with no
    chance to stop them (a Ray worker running vLLM, whose EngineCore process would run on
    after a ``kill -9``). The watchdog runs in a session of its own (so a kill of this
    process's group spares it), notes this process's descendants every ``interval_s``, and
    when this process has died, terminates those still running (SIGTERM, then SIGKILL after
    ``grace_s``), then exits. A process it noted is recognised by its start time, so a pid
    reused meanwhile is left alone. With ``report``, each look writes the pids it watches there
    (one per line).
    """
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from llmops.processes import _guard; "
         "_guard(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4] or None)",
         str(os.getpid()), str(interval_s), str(grace_s), str(report or "")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)


def _guard(pid: int, interval_s: float, grace_s: float, report: str | None = None) -> None:
    """The loop of :func:`guard_descendants` (in the watchdog process)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only the watched process's end stops it
    me = os.getpid()
    try:
        watched = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    seen: dict[int, psutil.Process] = {}
    while True:
        try:
            if not running(watched):
                break
            for child in watched.children(recursive=True):
                if child.pid != me:
                    seen.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            break
        if report:
            Path(report + ".tmp").write_text("".join(f"{p}\n" for p in seen))
            os.replace(report + ".tmp", report)
        time.sleep(interval_s)
    alive = [p for p in seen.values() if running(p)]  # same pid and start time
    for proc in alive:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    stubborn = wait_ended(alive, timeout=grace_s)
    for proc in stubborn:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
