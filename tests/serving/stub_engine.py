"""A stand-in for vLLM's OpenAI-compatible server, for tests of the watchdog, not of vLLM.

``python tests/serving/stub_engine.py --host H --port N``, started through ``engine.command``
by :class:`llmops.serving.engine.Engine` under the real watchdog. It starts in well under a
second where vLLM's CPU build takes half a minute, and, like vLLM, it:

- answers ``GET /health`` to anyone and everything else only with ``Bearer $VLLM_API_KEY``;
- serves ``GET /v1/models`` and ``POST /v1/chat/completions`` (a fixed answer, one "token" per
  word, cut at ``max_tokens``; streamed as server-sent events when asked), the response's ``id``
  naming the engine (``chatcmpl-<name>-...``, ``--name``, default the port) so that a test
  sees which engine of a pool answered; with ``--echo`` the answer is the last user message
  (the privacy tests: personal data in the answer as in the prompt);
- like a batching engine, runs at most ``--max-num-seqs`` requests at once, each token taking
  ``--token-ms`` (0: at once), the others waiting in a queue (for the replica benchmark);
- keeps a child process in its process group, as vLLM keeps its engine core, so that a test
  sees the watchdog stop the whole group and not only its leader.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = "a stub engine answers this"


class Handler(BaseHTTPRequestHandler):
    model = "base"
    key = ""
    name = ""
    token_s = 0.0
    echo = False
    slots = threading.BoundedSemaphore(1_000_000)
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _allowed(self) -> bool:
        scheme, _, token = (self.headers.get("authorization") or "").partition(" ")
        return bool(self.key) and scheme.lower() == "bearer" and hmac.compare_digest(token, self.key)

    def do_GET(self) -> None:
        if self.path == "/health":
            return self._send(200, {})
        if not self._allowed():
            return self._send(401, {"error": "Unauthorized"})
        if self.path == "/v1/models":
            return self._send(200, {"object": "list", "data": [
                {"id": self.model, "object": "model", "created": 0, "owned_by": "stub"}]})
        return self._send(404, {"error": "Not Found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        if not self._allowed():
            return self._send(401, {"error": "Unauthorized"})
        if self.path != "/v1/chat/completions":
            return self._send(404, {"error": "the stub engine serves only chat"})
        users = [m.get("content") for m in body.get("messages", [])
                 if isinstance(m, dict) and m.get("role") == "user"]
        echoed = users[-1] if self.echo and users and isinstance(users[-1], str) else ""
        words = (echoed or ANSWER).split()
        cap = int(body.get("max_tokens") or len(words))
        # a longer answer than ANSWER repeats it (the benchmark asks for many tokens)
        tokens = [words[i % len(words)] for i in range(cap)] if body.get("stream") else words[:cap]
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        rid = f"chatcmpl-{self.name}-{time.time_ns()}"
        usage = {"prompt_tokens": prompt, "completion_tokens": len(tokens),
                 "total_tokens": prompt + len(tokens)}
        with self.slots:  # a full batch: wait for a slot, as a queued request waits in vLLM
            if body.get("stream"):
                return self._stream(rid, body, tokens, usage)
            time.sleep(self.token_s * len(tokens))
            return self._send(200, {
                "id": rid, "object": "chat.completion",
                "created": int(time.time()), "model": body.get("model", self.model),
                "choices": [{"index": 0, "message": {"role": "assistant",
                                                     "content": " ".join(tokens)},
                             "finish_reason": "length" if cap < len(words) else "stop"}],
                "usage": usage})

    def _stream(self, rid: str, body: dict, tokens: list[str], usage: dict) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

        def event(data: str) -> None:
            raw = f"data: {data}\n\n".encode()
            self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
            self.wfile.flush()

        chunk = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()),
                 "model": body.get("model", self.model)}
        for i, token in enumerate(tokens):
            time.sleep(self.token_s)
            delta = {"content": (" " if i else "") + token}
            event(json.dumps({**chunk, "choices": [{"index": 0, "delta": delta,
                                                     "finish_reason": None}]}))
        event(json.dumps({**chunk, "choices": [{"index": 0, "delta": {},
                                                 "finish_reason": "length"}],
                          **({"usage": usage} if (body.get("stream_options") or {}).get(
                              "include_usage") else {})}))
        event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", default="base")
    parser.add_argument("--name", default=None, help="Named in each response's id.")
    parser.add_argument("--max-num-seqs", type=int, default=1_000_000,
                        help="Requests served at once; the others wait.")
    parser.add_argument("--token-ms", type=float, default=0.0, help="Time per answer token.")
    parser.add_argument("--echo", action="store_true", help="Answer with the last user message.")
    args = parser.parse_args()
    Handler.model, Handler.key = args.served_model_name, os.environ.get("VLLM_API_KEY", "")
    Handler.name = args.name or str(args.port)
    Handler.token_s = args.token_ms / 1000
    Handler.echo = args.echo
    Handler.slots = threading.BoundedSemaphore(args.max_num_seqs)
    # the "engine core": same process group, outlives this process unless the group is stopped
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
