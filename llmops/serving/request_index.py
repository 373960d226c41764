"""Which request ids exist and which client made each, so that feedback for an unknown request
is refused (404) and feedback is taken only from the client (key) that made the request."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from typing import Any

from llmops.lakehouse import open_table
from llmops.lakehouse.location import LakehouseRoot

__all__ = ["RequestIndex", "issued_at", "new_request_id", "owner_of"]


def new_request_id() -> str:
    """A server's id for a request: 32 hex digits, the first 12 its time in ms (so that any
    replica can tell a request answered a moment ago, maybe not yet in the table), the other 20
    random."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def issued_at(request_id: str) -> float | None:
    """When a :func:`new_request_id` id was issued (seconds since the epoch), else None."""
    if len(request_id) != 32:
        return None
    try:
        return int(request_id[:12], 16) / 1000
    except ValueError:
        return None


def owner_of(client: str | None, end_user: str | None) -> str:
    """Who may give feedback on a request: its client (key name, or address without keys),
    and for a widget key's request its session too (its end user is ``session:<id>``)."""
    client = client or ""
    if isinstance(end_user, str) and end_user.startswith("session:"):
        return f"{client}#{end_user}"
    return client


class RequestIndex:
    """Request ids answered by this gateway, backed by the ``inference_log`` table.

    The ids this process logged most recently are held in memory (at most
    ``memory_limit``, oldest forgotten first); any other id (answered by another
    gateway, or before a restart) is looked up in the table, reading only the
    ``request_id``, ``client`` and ``end_user`` columns of the last ``window_days`` (files
    outside the window are skipped on their statistics). An id not found is remembered as unknown for
    ``negative_ttl_s``, so that a burst of made-up ids costs one read each at most.
    """

    def __init__(self, lakehouse: LakehouseRoot, memory_limit: int = 1_000_000, window_days: float = 90,
                 negative_ttl_s: float = 5.0, negative_limit: int = 100_000) -> None:
        self.lakehouse = lakehouse
        self.memory_limit = memory_limit
        self.window_days = window_days
        self.negative_ttl_s = negative_ttl_s
        self.negative_limit = negative_limit
        self._ids: OrderedDict[str, str] = OrderedDict()  # request id -> its client
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._table: Any = None
        self._table_lock = threading.Lock()
        self.table_reads = 0

    def add(self, request_id: str, client: str = "") -> None:
        with self._lock:
            self._ids[request_id] = client
            self._unknown.pop(request_id, None)
            while len(self._ids) > self.memory_limit:
                self._ids.popitem(last=False)  # the table still knows it

    def contains_in_memory(self, request_id: str) -> bool:
        with self._lock:
            return request_id in self._ids

    def owner_in_memory(self, request_id: str) -> str | None:
        with self._lock:
            return self._ids.get(request_id)

    def contains(self, request_id: str) -> bool:
        """Whether the id was answered (memory first, then the table; blocking: call off-loop)."""
        return self.owner(request_id) is not None

    def owner(self, request_id: str, fresh: bool = False) -> str | None:
        """The client that made the request (its key's name, or its address without keys);
        None where the id is unknown. Memory first, then the table (``fresh``: even when the
        id was unknown a moment ago); blocking: call off-loop."""
        now = time.monotonic()
        with self._lock:
            if request_id in self._ids:
                return self._ids[request_id]
            seen = self._unknown.get(request_id)
            if seen is not None and now - seen < self.negative_ttl_s and not fresh:
                return None
        found = self._in_table(request_id)
        with self._lock:
            if found is not None:
                self._ids[request_id] = found
            else:
                self._unknown[request_id] = now
                while len(self._unknown) > self.negative_limit:
                    self._unknown.popitem(last=False)
        return found

    def _in_table(self, request_id: str) -> str | None:
        import pyarrow.compute as pc

        with self._table_lock:
            if self._table is None:
                self._table = open_table(self.lakehouse, "inference_log")
                if self._table is None:
                    return None
            else:
                self._table.update_incremental()  # only the commits since the last read
            dataset = self._table.to_pyarrow_dataset()
            self.table_reads += 1
        since = datetime.now(timezone.utc) - timedelta(days=self.window_days)
        where = (pc.field("ts") >= since) & (pc.field("request_id") == request_id)
        found = dataset.to_table(columns=["client", "end_user"], filter=where)
        if found.num_rows == 0:
            return None
        return owner_of(found.column("client")[0].as_py(), found.column("end_user")[0].as_py())
