"""Connections a client holds: headers that never finish arriving close the connection after
``gateway.header_timeout_s``, a stream whose client stops reading is dropped after
``gateway.send_timeout_s`` (and logged as 499), connections past ``gateway.limit_concurrency``
are answered 503, and ``/readyz``, which needs no key, asks the engine at most once per
``gateway.readiness_cache_s``.

The engine here is a stand-in served from this test (an HTTP server in a thread), not vLLM:
what is under test is the gateway's side of its connections. It counts the readiness checks
it is asked, and streams 64 MB of events at once, far more than the sockets' buffers hold,
so that a client that never reads stalls the gateway's writes.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from llmops.processes import wait_until
from tests.conftest import free_port
from tests.serving.conftest import GatewayProcess, read_rows, write_endpoint

EVENT = b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": "x" * 200}}]}
                               ).encode() + b"\n\n"
_BODY = json.dumps({"model": "base", "stream": True,
                    "messages": [{"role": "user", "content": "hi"}]}).encode()
# a streamed chat request, written to a raw socket by clients that then never read
STREAM_REQUEST = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\n"
                  + f"Content-Length: {len(_BODY)}\r\n\r\n".encode() + _BODY)


class _Engine(BaseHTTPRequestHandler):
    models_asked = 0
    posts = 0

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        type(self).models_asked += 1
        data = json.dumps({"object": "list", "data": [{"id": "base", "root": "base"}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        type(self).posts += 1
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        try:
            for _ in range(64 * 1024 * 1024 // len(EVENT)):
                self.wfile.write(EVENT)
            self.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway let go of the stream


def test_slow_clients_are_dropped_connections_capped_and_readiness_cached(project: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    engine_url = f"http://127.0.0.1:{server.server_address[1]}"
    port = free_port()
    # readiness first, on a gateway whose connection cap (64) lets 20 callers in at once
    write_endpoint(project, engine_url, port, readiness_cache_s=30, limit_concurrency=64)
    gw = GatewayProcess(project, port).wait_ready()
    try:
        from concurrent.futures import ThreadPoolExecutor

        before = _Engine.models_asked
        # 20 at once, before any was cached: callers that arrive while a check runs share it
        with ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(lambda _: httpx.get(gw.url + "/readyz", timeout=30).status_code,
                                  range(20)))
        assert codes == [200] * 20
        with httpx.Client(base_url=gw.url, timeout=30) as h:
            assert all(h.get("/readyz").status_code == 200 for _ in range(20))
        assert _Engine.models_asked - before == 1  # 40 checks, one question to the engine
    finally:
        gw.stop()

    port = free_port()
    write_endpoint(project, engine_url, port, send_timeout_s=3, readiness_cache_s=30,
                   header_timeout_s=1, limit_concurrency=3)
    gw = GatewayProcess(project, port).wait_ready()
    try:

        # headers sent a byte at a time and never finished (slowloris): closed at the deadline
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow:")
            started = time.monotonic()
            assert sock.recv(4096) == b""  # the gateway closed it, answering nothing
            assert time.monotonic() - started < 20  # at its deadline, not the socket's timeout
        assert "no whole request headers within 1 s" in gw.output()

        stalled = [socket.socket() for _ in range(2)]
        try:
            posted = _Engine.posts
            for sock in stalled:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", port))
                sock.sendall(STREAM_REQUEST)  # and never read: the gateway's writes stall
            wait_until(lambda: _Engine.posts - posted == 2, timeout=30,
                       what="both streams to reach the engine")
            # two streams held, and this third connection: limit_concurrency (3) is reached
            with httpx.Client(base_url=gw.url, timeout=30) as h:
                assert h.get("/healthz").status_code == 503
            # past send_timeout_s the gateway lets go of both
            started = time.monotonic()
            wait_until(lambda: gw.output().count("took nothing for 3 s: dropped") == 2,
                       timeout=60, what="the gateway to drop the stalled streams")
            assert time.monotonic() - started < 60
        finally:
            for sock in stalled:
                sock.close()
        rows = wait_until(lambda: (lambda r: r[r["status"] == 499])(
            read_rows(project, "inference_log")).to_dict("records"), timeout=30,
            what="the dropped streams' rows")
        assert {r["endpoint"] for r in rows} == {"/v1/chat/completions"}
        with httpx.Client(base_url=gw.url, timeout=30) as h:
            assert h.get("/healthz").status_code == 200  # the gateway serves on
    finally:
        gw.stop()
        server.shutdown()


def test_sigterm_with_a_stream_nobody_reads_stops_the_gateway_at_its_shutdown_timeout(
        project: Path) -> None:
    """A client that never reads holds its stream far past ``shutdown_timeout_s`` (its send
    timeout here is two minutes): SIGTERM still stops the gateway at the shutdown timeout,
    and what it acknowledged before is in the tables."""
    import signal

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    write_endpoint(project, f"http://127.0.0.1:{server.server_address[1]}", port,
                   send_timeout_s=120, shutdown_timeout_s=2)
    gw = GatewayProcess(project, port).wait_ready()
    stalled = socket.socket()
    try:
        posted = _Engine.posts
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(STREAM_REQUEST)  # and never read
        wait_until(lambda: _Engine.posts - posted == 1, timeout=30,
                   what="the stream to reach the engine")
        started = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        code = gw.proc.wait(timeout=90)
        took = time.monotonic() - started
        assert took < 60, took  # the shutdown timeout (2 s) and the flush, not the send timeout
        assert code == 0, gw.output()[-2000:]
        rows = read_rows(project, "inference_log")
        assert list(rows["endpoint"]) == ["/v1/chat/completions"], rows
    finally:
        stalled.close()
        gw.stop()
        server.shutdown()
