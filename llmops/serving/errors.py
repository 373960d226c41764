"""The gateway's errors: each is answered to the client in OpenAI's error shape."""

from __future__ import annotations

from starlette.responses import JSONResponse

__all__ = ["HTTPError"]


class HTTPError(Exception):
    """An error answered as ``{"error": {"message", "type", "code"}}`` with its status.

    ``headers`` go on the response too (``Retry-After`` on a 429).
    """

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.headers = headers or {}

    def response(self, request_id: str) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.kind,
                                       "code": self.status}},
                            status_code=self.status,
                            headers={**self.headers, "X-Request-Id": request_id})
