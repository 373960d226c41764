"""A stand-in for vLLM's OpenAI-compatible server, for tests of the watchdog, not of vLLM.

``python tests/serving/stub_engine.py --host H --port N``, started through ``engine.command``
by :class:`llmops.serving.engine.Engine` under the real watchdog. It starts in well under a
second where vLLM's CPU build takes half a minute, and, like vLLM, it:

- answers ``GET /health`` to anyone and everything else only with ``Bearer $VLLM_API_KEY``;
- serves ``GET /v1/models`` and non-streamed ``POST /v1/chat/completions`` (a fixed answer, one
  "token" per word, cut at ``max_tokens``);
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
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = "a stub engine answers this"


class Handler(BaseHTTPRequestHandler):
    model = "base"
    key = ""

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
        if self.path != "/v1/chat/completions" or body.get("stream"):
            return self._send(404, {"error": "the stub engine serves only non-streamed chat"})
        words = ANSWER.split()
        cap = int(body.get("max_tokens") or len(words))
        content = " ".join(words[:cap])
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        done = min(cap, len(words))
        return self._send(200, {
            "id": f"chatcmpl-stub-{time.time_ns()}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", self.model),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "length" if cap < len(words) else "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": done,
                      "total_tokens": prompt + done}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", default="base")
    args = parser.parse_args()
    Handler.model, Handler.key = args.served_model_name, os.environ.get("VLLM_API_KEY", "")
    # the "engine core": same process group, outlives this process unless the group is stopped
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
