"""Connect to an environment's MLflow stores, and fail fast when they are unreachable."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

from llmops.config import Settings
from llmops.errors import StoreUnavailableError

__all__ = ["connect", "ensure_experiment"]

def _check_server(settings: Settings) -> None:
    url = settings.tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - configured URI
            if resp.status == 200:
                return
            problem = f"status {resp.status}"
    except (urllib.error.URLError, OSError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise StoreUnavailableError(
        f"cannot reach the MLflow tracking server {settings.tracking_uri} "
        f"(environment '{settings.env}'): {problem}; start it, or fix tracking_uri "
        "in llmops.yaml / LLMOPS_TRACKING_URI"
    )


def connect(settings: Settings) -> str:
    """Point MLflow at the environment's stores and select the project's experiment.

    Selecting the experiment every time matters: MLflow remembers the active
    experiment id process-wide (and in ``MLFLOW_EXPERIMENT_ID``), and an id from
    another environment's store must not leak into this one. Returns the id.
    """
    import mlflow

    if settings.is_remote_tracking:
        # MLflow's REST client retries for minutes by default; an unreachable
        # server should be reported at once.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        _check_server(settings)
    else:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        # SQLAlchemy's default pool (5 + 10 overflow) is smaller than the threads an
        # evaluation run writes traces from; past it, writes time out and results are lost.
        os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", "32")
        os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", "32")
        if settings.tracking_uri.startswith("sqlite:"):
            _patient_sqlite()
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    return ensure_experiment(settings)


_SQLITE_READY = False


def _patient_sqlite() -> None:
    """Every SQLite connection SQLAlchemy opens in this process waits for a lock (30 s)
    instead of failing at once with "database is locked", in WAL mode (readers do not block
    the writer). Many threads write an evaluation's traces to the embedded store at once;
    without this, some writes failed and their rows were lost."""
    global _SQLITE_READY
    if _SQLITE_READY:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _on_connect(dbapi_connection, connection_record):  # type: ignore[no-untyped-def]
        import sqlite3

        if isinstance(dbapi_connection, sqlite3.Connection):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout = 30000")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.close()

    _SQLITE_READY = True


def ensure_experiment(settings: Settings, name: str | None = None) -> str:
    """Create (once) and select the experiment this project's runs go to; returns its id."""
    import mlflow
    from mlflow import MlflowClient

    exp_name = name or settings.project
    client = MlflowClient()
    exp = client.get_experiment_by_name(exp_name)
    if exp is None:
        exp_id = client.create_experiment(
            exp_name, artifact_location=settings.artifact_location or None
        )
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id
