"""``llmops serve``: the engine and the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from llmops.cli.options import env_option, settings_from

__all__ = ["serve"]


@click.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False,
                                                         exists=True),
              default=None, help="The endpoint settings file (default: serving/endpoint.yaml).")
@click.option("--host", default=None, help="Gateway bind address (default: serving/endpoint.yaml).")
@click.option("--port", type=int, default=None, help="Gateway port (default: serving/endpoint.yaml).")
@click.option("--engine-url", "engine_urls", multiple=True, metavar="URL",
              help="Serve over the engine already running at URL and start none (repeatable: "
                   "the gateway spreads requests over the engines, health-checked, keeping a "
                   "session or prompt prefix on one engine). Overrides engine.url.")
@click.option("--engine-port", type=int, default=None,
              help="Engine port (default: serving/endpoint.yaml).")
@click.option("--model", default=None,
              help="The engine's model: 'smollm2', 'tiny', a local model folder, or a model id.")
@click.option("--served-model-name", default=None, help="The name clients put in 'model'.")
@click.option("--dtype", default=None, help="Weights dtype (auto, bfloat16, float16, float32).")
@click.option("--max-model-len", type=click.IntRange(16), default=None, help="Longest sequence.")
@click.option("--tensor-parallel-size", type=click.IntRange(1), default=None, help="GPUs per replica.")
@click.option("--gpu-memory-utilization", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Share of GPU memory vLLM may take.")
@click.option("--max-num-seqs", type=click.IntRange(1), default=None,
              help="Most sequences per batch.")
@click.option("--attention-backend", default=None,
              help="vLLM attention backend (e.g. TRITON_ATTN, FLASH_ATTN).")
@click.option("--api-server-count", type=click.IntRange(1), default=None,
              help="vLLM API server processes.")
@click.option("--engine-arg", "engine_args", multiple=True,
              help="One more vLLM argument, passed as is (repeatable).")
@env_option
@click.pass_context
def serve(ctx: click.Context, config_path: Path | None, host: str | None, port: int | None,
          engine_port: int | None, engine_urls: tuple[str, ...], engine_args: tuple[str, ...],
          **engine: Any) -> None:
    """Start vLLM and the logging gateway in front of it; stop with Ctrl-C or SIGTERM.

    With --engine-url, start no engine: the gateway serves over the engines named.

    Engine options override serving/endpoint.yaml for this run.
    """
    from llmops.serving.server import serve as run

    overrides = {key: value for key, value in engine.items() if value is not None}
    if engine_args:
        overrides["extra_args"] = list(engine_args)
    run(settings_from(ctx), endpoint_file=config_path, host=host, port=port, engine_port=engine_port,
        echo=lambda line: click.echo(line, err=True), engine_overrides=overrides,
        engine_urls=list(engine_urls) or None)
