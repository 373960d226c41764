"""Options every command shares, and how commands report errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from llmops.config import Settings, load_settings

__all__ = ["env_option", "settings_from"]


def env_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--env`` (default ``$LLMOPS_ENV``, then the project's default) to a command."""

    @click.option(
        "--env",
        "env",
        default=None,
        help="Environment from llmops.yaml (default: $LLMOPS_ENV, then default_env).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, env: str | None, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        chosen = env or (ctx.find_root().params.get("env") if ctx.find_root() else None)
        ctx.ensure_object(dict)["env"] = chosen
        return func(*args, **kwargs)

    return wrapper


def settings_from(ctx: click.Context) -> Settings:
    """The settings of the environment the command line picked."""
    env = (ctx.find_root().obj or {}).get("env")
    return load_settings(env=env)
