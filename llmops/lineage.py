"""Lineage facts recorded on every artifact: content hashes and the git commit."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["content_hash", "git_commit", "git_is_dirty"]


def content_hash(value: Any) -> str:
    """A stable SHA-256 of a JSON-serialisable value (keys sorted, no whitespace)."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_commit(root: Path) -> str:
    """The HEAD commit of the repository holding ``root``, or ``"unknown"`` outside git."""
    return _git(root, "rev-parse", "HEAD") or "unknown"


def git_is_dirty(root: Path, path: Path | None = None) -> str:
    """``"true"`` if ``path`` (or the work tree) differs from HEAD, else ``"false"``.

    ``"unknown"`` outside a git repository or without git.
    """
    if git_commit(root) == "unknown":
        return "unknown"
    args = ["status", "--porcelain"] + ([str(Path(path).resolve())] if path else [])
    out = _git(root, *args)
    if out is None:
        return "unknown"
    return "true" if out else "false"
