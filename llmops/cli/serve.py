"""``llmops serve``: the engine and the gateway."""

from __future__ import annotations

import click

from llmops.cli.options import env_option, settings_from

__all__ = ["serve"]


@click.command()
@click.option("--host", default=None, help="Gateway bind address (default: serving/endpoint.yaml).")
@click.option("--port", type=int, default=None, help="Gateway port (default: serving/endpoint.yaml).")
@click.option("--engine-port", type=int, default=None,
              help="Engine port (default: serving/endpoint.yaml).")
@env_option
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, engine_port: int | None) -> None:
    """Start vLLM and the logging gateway in front of it; stop with Ctrl-C or SIGTERM."""
    from llmops.serving.server import serve as run

    run(settings_from(ctx), host=host, port=port, engine_port=engine_port,
        echo=lambda line: click.echo(line, err=True))
