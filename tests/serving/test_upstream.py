"""The engine closing a pooled connection just as the gateway sends on it.

vLLM closes an idle connection after its keep-alive timeout; a request written to
that connection at that moment fails without reaching it. The real engine cannot
produce that race on demand, so this test puts a small HTTP server in its place
(the one fake in these tests): it answers the first request on each connection and
closes the connection on the second without answering, which is what the race
looks like from the gateway. The gateway (a real ``llmops serve``) must answer
every request.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.serving.conftest import GatewayProcess, write_endpoint

_COMPLETION = {"id": "c1", "object": "chat.completion", "created": 0, "model": "base",
               "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "pong"}}],
               "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


class ClosingUpstream:
    """Answers the first request of each connection, closes the connection on the second."""

    def __init__(self) -> None:
        self.port = free_port()
        self.closed_unanswered = 0
        self.answered = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = next((int(v) for k, _, v in (x.partition(": ") for x in lines[1:])
                               if k.lower() == "content-length"), 0)
                if length:
                    await reader.readexactly(length)
                requests += 1
                if requests == 2:
                    self.closed_unanswered += 1
                    break
                path = lines[0].split()[1]
                body = json.dumps({"object": "list", "data": [{"id": "base"}]}
                                  if path == "/v1/models" else _COMPLETION).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\nconnection: keep-alive\r\n\r\n" % len(body)
                             + body)
                await writer.drain()
                self.answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_forever()
        server.close()

    def __enter__(self) -> ClosingUpstream:
        self.thread.start()
        assert self.ready.wait(10), "the upstream did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def closing_upstream() -> Iterator[ClosingUpstream]:
    with ClosingUpstream() as upstream:
        yield upstream


def test_a_connection_closed_under_a_request_is_retried_once(project: Path,
                                                             closing_upstream) -> None:
    port = free_port()
    write_endpoint(project, f"http://127.0.0.1:{closing_upstream.port}", port)
    gw = GatewayProcess(project, port).wait_ready()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as h:
            statuses = [h.post("/v1/chat/completions", json={
                "model": "base", "messages": [{"role": "user", "content": f"ping {i}"}]}
            ).status_code for i in range(20)]
            metrics = h.get("/metrics").text
    finally:
        gw.stop()
    assert statuses == [200] * 20
    # the race happened (requests were written to connections the upstream then closed)
    assert closing_upstream.closed_unanswered >= 10
    retries = next(float(line.split()[-1]) for line in metrics.splitlines()
                   if line.startswith("llmops_upstream_retries "))
    assert retries == closing_upstream.closed_unanswered
