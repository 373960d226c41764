"""The ``llmops`` command line: noun, then verb."""

from __future__ import annotations

from llmops.cli.main import cli, main

__all__ = ["cli", "main"]
