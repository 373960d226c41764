"""Widget sessions: ids the gateway issues and signs, so that a key shared by a web page's
visitors (a ``widget`` key, public in the page's HTML) still tells one visitor from another.

A chain call with a widget key gets ``X-Llmops-Session: <id>.<signature>`` back (a new session
unless it sent a valid one); the widget sends it with its later calls. The gateway logs the
call's end user as ``session:<id>``: feedback on an answer is taken only from its session,
and a rollout's arm is sticky for it, whatever the page claims. The signature is an HMAC with
the secret in ``$LLMOPS_SESSION_SECRET`` (set the same one on every replica); without it each
gateway process draws its own, and its sessions end with it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

__all__ = ["SESSION_HEADER", "Sessions"]

SESSION_HEADER = "X-Llmops-Session"


class Sessions:
    def __init__(self, secret_env: str = "LLMOPS_SESSION_SECRET") -> None:
        given = os.environ.get(secret_env, "")
        self._secret = given.encode("utf-8") if given else secrets.token_bytes(32)

    def _sign(self, sid: str) -> str:
        return hmac.new(self._secret, sid.encode("ascii"), hashlib.sha256).hexdigest()[:32]

    def issue(self) -> tuple[str, str]:
        """A new session: its id and the token the client sends back."""
        sid = secrets.token_hex(12)
        return sid, f"{sid}.{self._sign(sid)}"

    def verify(self, token: str | None) -> str | None:
        """The session id of a token this gateway (or one with its secret) signed, else None."""
        if not token or token.count(".") != 1:
            return None
        sid, signature = token.split(".")
        if len(sid) != 24 or not all(c in "0123456789abcdef" for c in sid):
            return None
        return sid if hmac.compare_digest(signature, self._sign(sid)) else None
