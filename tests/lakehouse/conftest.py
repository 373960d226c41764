"""A bare project for the table commands: the lakehouse is all they need."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def bare_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bare project: the lakehouse is all these commands need (no models, no MLflow)."""
    (tmp_path / "llmops.yaml").write_text("project: t\n")
    monkeypatch.delenv("LLMOPS_ENV", raising=False)
    return tmp_path


def lakehouse(project: Path) -> Path:
    return project / ".llmops" / "dev" / "lakehouse"
