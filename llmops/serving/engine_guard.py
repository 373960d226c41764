"""What keeps the engine tied to its gateway: a watchdog process and a key check on every route.

The watchdog runs as ``python -m llmops.serving.engine_guard --parent-pid P [--pid-file F]
[--port N] -- <vllm command>`` (or another engine's command: ``engine.command``). It starts
vLLM in a process group of its own and stops that whole group (vLLM's API server and the
engine-core processes it spawns) when the gateway process ``P`` dies, however it dies
(``kill -9`` included: the kernel sends the watchdog SIGTERM through ``PR_SET_PDEATHSIG``, and
a poll of the parent pid backs that up), or when it gets SIGTERM itself. It exits with vLLM's
status when vLLM exits on its own.

:class:`EngineKeyCheck` runs inside vLLM (``--middleware``): vLLM's own ``VLLM_API_KEY`` check
guards only ``/v1``, ``/v2``, ``/inference`` and ``/cohere``, while vLLM 0.32 also serves
generation at ``/invocations`` and loads LoRA adapters at ``/adapters`` (SageMaker routes),
tokenizes at ``/tokenize`` and more. This check asks for the key everywhere but ``/health``.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from llmops.processes import die_with_parent

__all__ = ["EngineKeyCheck", "GUARD_MODULE", "main", "stop_group"]

GUARD_MODULE = "llmops.serving.engine_guard"
_PR_SET_CHILD_SUBREAPER = 36
_POLL_S = 0.5

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class EngineKeyCheck:
    """ASGI middleware: every request but ``GET /health`` must carry ``Bearer $VLLM_API_KEY``.

    Without ``VLLM_API_KEY`` in the environment everything but ``/health`` is refused.
    """

    open_paths = frozenset({"/health"})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        key = os.environ.get("VLLM_API_KEY") or ""
        self._digest = hashlib.sha256(key.encode()).digest() if key else None

    def _allowed(self, scope: Scope) -> bool:
        path = scope["path"].removeprefix(scope.get("root_path", "") or "")
        if path in self.open_paths:
            return True
        if self._digest is None:
            return False
        for name, value in scope.get("headers") or []:
            if name.lower() == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                return scheme.lower() == "bearer" and secrets.compare_digest(
                    hashlib.sha256(token.encode()).digest(), self._digest)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._allowed(scope):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            body = b'{"error": "Unauthorized"}'
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


def _prctl(option: int, value: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent-pid poll still works
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap() -> dict[int, int]:
    """Reap every exited child (orphaned engine-core processes land here: we are their
    subreaper); returns ``{pid: exit code}``."""
    done: dict[int, int] = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done[pid] = os.waitstatus_to_exitcode(status)


def stop_group(pgid: int, grace_s: float = 10.0, reap: bool = False) -> None:
    """SIGTERM a process group, then SIGKILL whatever is left after ``grace_s``."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if reap:
            _reap()
        if not _group_alive(pgid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while reap and time.monotonic() < deadline and _group_alive(pgid):
        _reap()
        time.sleep(0.05)


def _parent_alive(parent_pid: int) -> bool:
    return os.getppid() == parent_pid


def _set_engine_pdeathsig() -> None:
    # runs in vLLM's process before exec: should this watchdog die abruptly, vLLM is told too
    die_with_parent(signal.SIGTERM)


def run(parent_pid: int, cmd: Sequence[str], pid_file: Path | None = None,
        grace_s: float = 10.0, port: int | None = None) -> int:
    """Run ``cmd`` while ``parent_pid`` lives; returns vLLM's exit code (or 143 when stopped).

    ``port`` (for the pid file) defaults to the command's ``--port``."""
    stop = False

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    die_with_parent(signal.SIGTERM)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    if not _parent_alive(parent_pid):  # the parent died before PDEATHSIG was armed
        return 143
    engine = subprocess.Popen(list(cmd), start_new_session=True,  # noqa: PLW1509
                              preexec_fn=_set_engine_pdeathsig)
    if pid_file is not None:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = pid_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"guard_pid": os.getpid(), "engine_pgid": engine.pid,
                                   "port": port if port is not None else _port_of(cmd),
                                   "started": time.time()}))
        os.replace(tmp, pid_file)
    code = 143
    try:
        while not stop and _parent_alive(parent_pid):
            exited = _reap()
            if engine.pid in exited:
                code = engine.returncode = exited[engine.pid]
                break
            time.sleep(_POLL_S)
        # whatever the reason, leave nothing of the engine behind
        stop_group(engine.pid, grace_s, reap=True)
        _reap()
        return code
    finally:
        if pid_file is not None:
            try:
                if json.loads(pid_file.read_text()).get("guard_pid") == os.getpid():
                    pid_file.unlink()
            except (OSError, ValueError):
                pass


def _port_of(cmd: Sequence[str]) -> int | None:
    args = list(cmd)
    if "--port" in args[:-1]:
        try:
            return int(args[args.index("--port") + 1])
        except ValueError:
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {GUARD_MODULE}", description=__doc__)
    parser.add_argument("--parent-pid", type=int, required=True,
                        help="Stop the engine when this process dies.")
    parser.add_argument("--pid-file", type=Path, default=None,
                        help="Where to record this watchdog's pid and the engine's group.")
    parser.add_argument("--port", type=int, default=None,
                        help="The engine's port (recorded in the pid file, and what tells a later "
                             "start that this watchdog is ours); default: the command's --port.")
    parser.add_argument("--grace-s", type=float, default=10.0,
                        help="Seconds between SIGTERM and SIGKILL when stopping the engine.")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the engine's command.")
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("no engine command after --")
    return run(args.parent_pid, cmd, args.pid_file, args.grace_s, args.port)


if __name__ == "__main__":
    sys.exit(main())
