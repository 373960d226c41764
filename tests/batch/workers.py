"""Batch workers for the tests: real code run by real Ray actors."""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from llmops.batch import BatchWorker


class Shout(BatchWorker):
    """Upper-cases ``text``; a batch holding ``poison`` raises (the job retries it row by row),
    and a row ``skip-me`` is marked failed in the error column without raising."""

    output_schema: ClassVar[dict[str, str]] = {"shout": "string", "length": "int64",
                                               "pid": "int64"}

    def __init__(self, delay_s: float = 0.0, built_log: str | None = None) -> None:
        self.delay_s = delay_s
        self.pid = os.getpid()
        if built_log:  # each build noted, for a test that counts them
            with open(built_log, "a") as log:
                log.write(f"{self.pid}\n")

    def process(self, rows: Any) -> Any:
        import pandas as pd

        if (rows["text"] == "poison").any():
            raise ValueError("poisoned row")
        time.sleep(self.delay_s * len(rows))
        return pd.DataFrame({
            "shout": rows["text"].str.upper(), "length": rows["text"].str.len(),
            "pid": self.pid,
            "error": ["skipped on purpose" if t == "skip-me" else None for t in rows["text"]]})
