"""Entry point: ``llmops [--env ENV] NOUN VERB ...``."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from llmops.errors import LlmopsError

__all__ = ["cli", "main"]


class _Group(click.Group):
    """A group that turns llmops errors into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LlmopsError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except Exception as exc:
            from mlflow.exceptions import MlflowException

            if not isinstance(exc, MlflowException):
                raise
            first = (exc.message or str(exc)).strip().splitlines()[0]
            click.echo(f"error: MLflow: {first}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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


def _register() -> None:
    from llmops.cli import (
        batch,
        chains,
        demo,
        feedback,
        index,
        models,
        monitor,
        prompts,
        rollout,
        serve,
        tables,
    )
    from llmops.cli import eval as eval_cli
    from llmops.cli import finetune as finetune_cli

    cli.add_command(prompts.prompts)
    cli.add_command(chains.chains)
    cli.add_command(index.index)
    cli.add_command(feedback.feedback)
    cli.add_command(eval_cli.eval_group)
    cli.add_command(monitor.monitor)
    cli.add_command(finetune_cli.finetune)
    cli.add_command(models.models)
    cli.add_command(demo.demo)
    cli.add_command(serve.serve)
    cli.add_command(tables.tables)
    cli.add_command(rollout.rollout)
    cli.add_command(batch.batch)


_register()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI (the ``llmops`` console script)."""
    cli.main(args=argv, prog_name="llmops")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
