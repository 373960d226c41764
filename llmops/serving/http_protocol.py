"""uvicorn's HTTP/1.1 protocol with a deadline on a request's headers.

uvicorn times out an idle kept-alive connection but not one that is sending a request's
headers: any byte cancels its timer, so a client that sends headers a byte at a time, or
opens a connection and sends nothing, holds it (and a slot of ``limit_concurrency``) forever
(slowloris). Here a connection must deliver each request's headers, whole, within
``header_timeout_s`` of its first byte (of the connection, for the first request); past that
it is closed. Between requests the keep-alive timeout applies as before. The protocol is the
one uvicorn's ``http="auto"`` picks (httptools where installed, else h11), with this added.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["with_header_deadline"]

log = logging.getLogger(__name__)


class _HeaderDeadline:
    """A mixin for uvicorn's HTTP protocols (both keep ``cycle``, ``loop`` and ``transport``)."""

    header_timeout_s = 10.0
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._headers_due: asyncio.TimerHandle | None = None
        self._arm()

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._headers_due is None:
            self._headers_due = self.loop.call_later(self.header_timeout_s, self._late)

    def _disarm(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _late(self) -> None:
        self._headers_due = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            log.warning("a client sent no whole request headers within %g s: connection closed",
                        self.header_timeout_s)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._waiting_for_headers():
            self._arm()  # the next request's headers have begun: they have this long
        super().data_received(data)  # type: ignore[misc]
        if not self._waiting_for_headers():
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if self._waiting_for_headers():
            self._disarm()  # idle between requests: the keep-alive timeout's turn

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]


def with_header_deadline(header_timeout_s: float) -> Any:
    """The protocol class for ``uvicorn.Config(http=...)``, with this deadline."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # httptools is not installed: uvicorn's h11 protocol
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    return type(f"HeaderDeadline{base.__name__}", (_HeaderDeadline, base),
                {"header_timeout_s": header_timeout_s})
