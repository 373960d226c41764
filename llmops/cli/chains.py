"""``llmops chains``: log a chain file as a model, promote it, invoke it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from llmops.cli.options import env_option, settings_from

__all__ = ["chains"]


@click.group()
def chains() -> None:
    """Chains packaged as MLflow models."""


@chains.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Registered model name (default: from the file name).")
@click.option("--alias", default=None, help="Alias to point at the new version (e.g. staging).")
@click.option("--prompt", default=None, metavar="REF",
              help="Serve this prompt version instead of the file's (e.g. qa/3, an optimized "
                   "version); it must take the same variables.")
@env_option
@click.pass_context
def log(ctx: click.Context, file: Path, name: str | None, alias: str | None,
        prompt: str | None) -> None:
    """Log FILE (a models-from-code chain) and register a new model version."""
    from llmops.chains import log_chain

    click.echo(f"logging {file} ...", err=True)
    logged = log_chain(file, name=name, alias=alias, settings=settings_from(ctx), prompt=prompt)
    suffix = f", alias {logged.alias}" if logged.alias else ""
    click.echo(f"registered {logged.name}/{logged.version} (prompt {logged.prompt_uri}{suffix})")
    click.echo(f"run {logged.run_id}")


@chains.command()
@click.argument("name")
@click.option("--alias", "alias_name", required=True, help="Alias to move (e.g. production).")
@click.option("--version", type=int, default=None, help="Version to point at (default: latest).")
@env_option
@click.pass_context
def promote(ctx: click.Context, name: str, alias_name: str, version: int | None) -> None:
    """Move NAME@ALIAS to a version, recording who moved it, when and from where."""
    from llmops.chains import promote as promote_chain

    settings = settings_from(ctx)
    target = promote_chain(name, alias_name, version, settings=settings)
    click.echo(f"{name}@{alias_name} -> {name}/{target}")


@chains.command()
@click.argument("ref")
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help="Print the whole answer as JSON.")
@env_option
@click.pass_context
def invoke(ctx: click.Context, ref: str, text: str, as_json: bool) -> None:
    """Ask the chain REF (NAME, NAME@ALIAS, NAME/VERSION) the question TEXT."""
    from llmops.chains import invoke as invoke_chain

    answer = invoke_chain(ref, text, settings_from(ctx))
    click.echo(json.dumps(answer, indent=2, default=str) if as_json else answer["answer"])
