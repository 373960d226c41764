"""Which request ids exist, so that feedback for an unknown request is refused (404)."""

from __future__ import annotations

import threading
from pathlib import Path

from llmops.lakehouse import table_path

__all__ = ["RequestIndex"]


class RequestIndex:
    """Request ids answered by this gateway, backed by the ``inference_log`` table.

    Ids this process logged are held in memory; any other id (answered by
    another gateway, or before a restart) is looked up in the table.
    """

    def __init__(self, lakehouse: Path, memory_limit: int = 1_000_000) -> None:
        self.lakehouse = Path(lakehouse)
        self.memory_limit = memory_limit
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def add(self, request_id: str) -> None:
        with self._lock:
            if len(self._ids) >= self.memory_limit:
                self._ids.clear()  # the table still knows them
            self._ids.add(request_id)

    def contains(self, request_id: str) -> bool:
        with self._lock:
            if request_id in self._ids:
                return True
        path = table_path(self.lakehouse, "inference_log")
        if not (path / "_delta_log").is_dir():
            return False
        import pyarrow.compute as pc
        from deltalake import DeltaTable

        dataset = DeltaTable(str(path)).to_pyarrow_dataset()
        found = dataset.to_table(columns=["request_id"],
                                 filter=pc.field("request_id") == request_id).num_rows > 0
        if found:
            self.add(request_id)
        return found
