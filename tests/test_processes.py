"""llmops.processes: a real child server waited for, a failing one reported, a tree stopped."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import psutil
import pytest

from llmops.errors import LlmopsError
from llmops.processes import (
    free_port,
    http_status,
    running,
    start_process,
    stop_process_tree,
    wait_ended,
    wait_for_http,
    wait_until,
)

# a child that starts a grandchild, then serves HTTP (the shape of the gateway and its engine)
SERVER = (
    "import http.server, subprocess, sys\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
    "print('serving', flush=True)\n"
    "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), "
    "http.server.SimpleHTTPRequestHandler).serve_forever()\n"
)


def test_a_server_is_waited_for_and_its_whole_tree_stopped(tmp_path: Path) -> None:
    port = free_port()
    proc = start_process([sys.executable, "-c", SERVER, str(port)], tmp_path / "logs" / "s.log",
                         cwd=tmp_path)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", timeout=60, proc=proc,
                      log_path=tmp_path / "logs" / "s.log")
        assert http_status(f"http://127.0.0.1:{port}/no-such-file") == 404
        children = wait_until(lambda: psutil.Process(proc.pid).children(), timeout=30,
                              what="the server's child")
    finally:
        code = stop_process_tree(proc, grace_s=10)
    assert code == -signal.SIGTERM
    assert not any(running(c) for c in children)
    assert "serving" in (tmp_path / "logs" / "s.log").read_text()
    assert http_status(f"http://127.0.0.1:{port}/") is None


def test_a_process_that_exits_fails_the_wait_at_once_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "bad.log"
    proc = start_process([sys.executable, "-c", "import sys; print('no model here'); sys.exit(3)"],
                         log)

    class Refused(LlmopsError):
        pass

    with pytest.raises(Refused, match=r"exited with status 3 while waiting for .* ready(.|\n)*"
                                      r"no model here"):
        wait_for_http(f"http://127.0.0.1:{free_port()}/", timeout=600, proc=proc, log_path=log,
                      what="the bad server to be ready", error=Refused)


def test_a_wait_past_its_deadline_names_what_it_waited_for() -> None:
    with pytest.raises(LlmopsError, match="timed out after 0 s waiting for the moon"):
        wait_until(lambda: False, timeout=0.3, interval=0.05, what="the moon")
    assert wait_until(lambda: 7, timeout=1, what="a number") == 7


def test_stopping_a_gone_process_is_no_error(tmp_path: Path) -> None:
    proc = start_process([sys.executable, "-c", "pass"], tmp_path / "x.log")
    proc.wait(30)
    assert stop_process_tree(proc) == 0
    assert stop_process_tree(proc.pid) is None


# a parent that starts a sleeping child through start_process, prints its pid, then waits
PARENT = (
    "import sys, time\n"
    "from llmops.processes import start_process\n"
    "child = start_process([sys.executable, '-c', 'import time; time.sleep(300)'], "
    "sys.argv[1], with_parent=sys.argv[2] == 'yes')\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(300)\n"
)


@pytest.mark.parametrize("with_parent", [True, False])
def test_a_child_started_with_its_parent_dies_with_it(tmp_path: Path, with_parent: bool) -> None:
    import subprocess

    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path / "child.log"),
                               "yes" if with_parent else "no"], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    try:
        parent.send_signal(signal.SIGKILL)  # no cleanup runs in the parent
        parent.wait(timeout=30)
        if with_parent:
            wait_until(lambda: not running(child),
                       timeout=30, what="the child to stop with its parent")
        else:  # the control: without it, the child outlives its killed parent
            assert running(child)
    finally:
        if child.is_running():
            child.kill()


# a parent (a Ray worker's shape) that arms the guard, then starts a child of its own in a
# session of its own (so that killing the parent's group does not reach it), and waits
GUARDED = (
    "import subprocess, sys, time\n"
    "from pathlib import Path\n"
    "from llmops.processes import guard_descendants\n"
    "guard = guard_descendants(interval_s=0.1, grace_s=5, report=Path(sys.argv[1]))\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'],\n"
    "                         start_new_session=True)\n"
    "print(child.pid, guard.pid, flush=True)\n"
    "time.sleep(300)\n"
)


def test_a_guard_stops_what_a_killed_process_left_running(tmp_path: Path) -> None:
    import subprocess

    report = tmp_path / "watched"
    parent = subprocess.Popen([sys.executable, "-c", GUARDED, str(report)],
                              stdout=subprocess.PIPE, text=True)
    child_pid, guard_pid = (int(x) for x in parent.stdout.readline().split())  # type: ignore[union-attr]
    child, guard = psutil.Process(child_pid), psutil.Process(guard_pid)
    try:
        wait_until(lambda: report.is_file() and str(child_pid) in report.read_text().split(),
                   timeout=20, what="the guard to watch the child")
        parent.kill()  # no chance to stop its child
        parent.wait(10)
        wait_until(lambda: not running(child),
                   timeout=20, what="the guard to stop the orphaned child")
        wait_until(lambda: not running(guard),
                   timeout=20, what="the guard to exit")
    finally:
        for proc in (child, guard):
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass


# a parent that starts a child which exits at once, and never collects it: a zombie
UNREAPED = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'pass'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(300)\n"
)


def test_a_zombie_counts_as_ended_and_a_live_process_does_not(tmp_path: Path) -> None:
    """A process that has exited but that no one reaped (an orphan under a container's pid 1
    that never waits) has ended: waiting on it ends at once, while a live one is waited for."""
    import subprocess

    parent = subprocess.Popen([sys.executable, "-c", UNREAPED], stdout=subprocess.PIPE, text=True)
    try:
        zombie = psutil.Process(int(parent.stdout.readline()))  # type: ignore[union-attr]
        wait_until(lambda: zombie.status() == psutil.STATUS_ZOMBIE, timeout=30,
                   what="the child to exit")
        assert zombie.is_running() and not running(zombie)
        assert not running(zombie.pid)
        assert wait_ended([zombie], timeout=60) == []  # at once, not after 60 s
        assert psutil.wait_procs([zombie], timeout=0.5)[1] == [zombie]  # psutil still waits

        live = psutil.Process(parent.pid)
        assert running(live) and running(parent.pid)
        assert wait_ended([live], timeout=0.5) == [live]
        parent.kill()
        assert wait_ended([live], timeout=30) == []
        assert not psutil.pid_exists(parent.pid)  # our own child: reaped, not left a zombie
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
