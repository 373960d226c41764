"""The demo's output for a person: step lines with their times, quiet libraries, a summary."""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llmops.config import Settings

__all__ = ["StepClock", "quiet_libraries", "summary_lines"]


class StepClock:
    """Prints ``[n/N] text (12 s)``: each step's line with the time since the previous one."""

    def __init__(self, echo: Callable[[str], None], steps: int) -> None:
        self.echo, self.steps = echo, steps
        self.start = self.mark = time.perf_counter()
        self.times: dict[int, float] = {}

    def done(self, step: int, text: str) -> None:
        now = time.perf_counter()
        self.times[step] = now - self.mark
        self.mark = now
        self.echo(f"[{step}/{self.steps}] {text} ({self.times[step]:.0f} s)")

    @property
    def total(self) -> float:
        return time.perf_counter() - self.start


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """No library INFO lines, warnings or loading bars while the demo prints its own lines.

    What libraries still write to stderr (MLflow's registration notices, warnings that
    MLflow's autologging re-routes past the filters, the harness's bars) is held back and
    shown only when the demo fails.
    """
    import io
    import sys

    from transformers.utils import logging as hf_logging

    env = {"MLFLOW_LOGGING_LEVEL": "WARNING", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
           "TRANSFORMERS_VERBOSITY": "error", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
           "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    old_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    loggers = {name: logging.getLogger(name).level
               for name in ("mlflow", "alembic", "httpx", "chromadb", "transformers", "datasets")}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    hf_bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    hf_level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    held = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(held):
            warnings.simplefilter("ignore")
            yield
    except BaseException:
        sys.stderr.write(held.getvalue()[-4000:])
        raise
    finally:
        for name, level in loggers.items():
            logging.getLogger(name).setLevel(level)
        hf_logging.set_verbosity(hf_level)
        if hf_bars:
            hf_logging.enable_progress_bar()
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def summary_lines(settings: Settings, built: dict[str, Any], times: dict[int, float],
                  total: float) -> list[str]:
    """What the demo built and where to look at it."""
    root = Path.cwd()

    def rel(path: Path | str) -> str:
        if "://" in str(path):  # a lakehouse on object storage
            return str(path)
        path = Path(path)
        try:
            return str(path.relative_to(root))
        except ValueError:
            return str(path)

    lake = settings.lakehouse
    lines = ["", f"Summary ({total / 60:.1f} min; per step: "
             + ", ".join(f"{n}: {t:.0f} s" for n, t in sorted(times.items())) + ")"]
    lines += [f"  built: {item}" for item in built.get("items", [])]
    lines += [
        "  look at it:",
        f"    MLflow UI:  mlflow ui --backend-store-uri {settings.tracking_uri}  "
        "(then open http://127.0.0.1:5000)",
        f"    tables:     {rel(lake)}/{{inference_log,feedback,eval_results,monitoring,index_runs}}"
        " (Delta; llmops.lakehouse.read_table, pandas, DuckDB)",
    ]
    if built.get("plot"):
        lines.append(f"    plot:       {rel(built['plot'])}")
    lines += [
        f"    serve:      llmops --env {settings.env} serve, then open http://127.0.0.1:8000/ "
        "(the feedback widget)",
    ]
    return lines
