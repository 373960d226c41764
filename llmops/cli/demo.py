"""``llmops demo``: the whole loop on embedded defaults."""

from __future__ import annotations

import click

from llmops.cli.options import env_option, settings_from

__all__ = ["demo"]


@click.command()
@click.option("--skip-serving", is_flag=True, help="Stop before starting vLLM and the gateway.")
@click.option("--profile", type=click.Choice(["full", "quick"]), default="full", show_default=True,
              help="quick: the same steps on less data (the gates ask 12 golden questions, a "
                   "shorter fine-tune), for checking the loop; full: the figures to quote.")
@env_option
@click.pass_context
def demo(ctx: click.Context, skip_serving: bool, profile: str) -> None:
    """Run the main job end to end on embedded defaults."""
    from llmops.demo import run_demo

    run_demo(settings_from(ctx), echo=click.echo, with_serving=not skip_serving, profile=profile)
    click.echo("demo finished")
