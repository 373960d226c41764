"""Entry point: ``llmops [--env ENV] NOUN VERB ...``.

Each noun's module is imported only when that noun runs, or when ``llmops --help`` lists
it (Click's lazily loaded subcommands), so that ``llmops prompts ...`` never pays for
importing the serving, fine-tuning or batch commands.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import click

from llmops.errors import LlmopsError

__all__ = ["cli", "main"]

# noun -> "module:attribute" of its click command, imported on first use
COMMANDS = {
    "batch": "llmops.cli.batch:batch",
    "chains": "llmops.cli.chains:chains",
    "demo": "llmops.cli.demo:demo",
    "eval": "llmops.cli.eval:eval_group",
    "feedback": "llmops.cli.feedback:feedback",
    "finetune": "llmops.cli.finetune:finetune",
    "index": "llmops.cli.index:index",
    "models": "llmops.cli.models:models",
    "monitor": "llmops.cli.monitor:monitor",
    "prompts": "llmops.cli.prompts:prompts",
    "rollout": "llmops.cli.rollout:rollout",
    "serve": "llmops.cli.serve:serve",
    "tables": "llmops.cli.tables:tables",
}


class _Group(click.Group):
    """The root group: nouns load lazily; llmops errors become one line on stderr and exit 1."""

    def __init__(self, *args: Any, lazy_subcommands: dict[str, str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = lazy_subcommands or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_subcommands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands and cmd_name not in self.commands:
            module, _, name = self.lazy_subcommands[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), name)
            if not isinstance(command, click.Command):
                raise TypeError(f"{module}.{name} is not a click command")
            self.commands[cmd_name] = command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LlmopsError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # --help, usage errors: click's own handling
        except Exception as exc:
            # only a command that imported MLflow can raise its errors: importing it here
            # for anything else would cost every failing command MLflow's start-up
            mlflow_exceptions = sys.modules.get("mlflow.exceptions")
            if mlflow_exceptions is None or not isinstance(exc, mlflow_exceptions.MlflowException):
                raise
            first = (exc.message or str(exc)).strip().splitlines()[0]
            click.echo(f"error: MLflow: {first}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, lazy_subcommands=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--env", default=None, help="Environment from llmops.yaml (default $LLMOPS_ENV, then default_env)."
)
@click.version_option(package_name="llmops")
@click.pass_context
def cli(ctx: click.Context, env: str | None) -> None:
    """llmops: version, evaluate and promote prompts, chains, indexes and adapters."""
    ctx.ensure_object(dict)["env"] = env
    # Third-party libraries are chatty at INFO; llmops prints its own progress.
    logging.getLogger("mlflow").setLevel(os.environ.get("LLMOPS_MLFLOW_LOG_LEVEL", "WARNING"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI (the ``llmops`` console script)."""
    cli.main(args=argv, prog_name="llmops")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
