"""``llmops finetune``: train LoRA adapters, register and promote them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import click

from llmops.cli.options import env_option, settings_from

__all__ = ["finetune"]


@click.group()
def finetune() -> None:
    """LoRA adapters trained on feedback, registered in MLflow."""


def _script_args(env: str | None, base: str | None, method: str | None, data: str | None,
                 config: Path | None, alias: str | None, progress: bool) -> list[str]:
    """``finetune run ...`` as given, for every process of a multi-GPU launch."""
    args = ["finetune", "run"]
    for flag, value in (("--base", base), ("--method", method), ("--data", data),
                        ("--config", str(config.resolve()) if config else None),
                        ("--alias", alias), ("--env", env)):
        if value is not None:
            args += [flag, value]
    return args if progress else [*args, "--no-progress"]


@finetune.command()
@click.option("--base", default=None, help="'tiny', a model folder or a model id (default: config).")
@click.option("--method", type=click.Choice(["sft", "kto"]), default=None,
              help="sft: prompt/completion pairs; kto: thumbs-labelled rows (default: config).")
@click.option("--data", default=None, help="'feedback' or a JSON lines file (default: config).")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Job settings (default: finetune/lora.yaml of the project).")
@click.option("--alias", default=None, help="Alias to point at the new version (e.g. staging).")
@click.option("--progress/--no-progress", default=True, help="Show the training progress bar.")
@env_option
@click.pass_context
def run(ctx: click.Context, base: str | None, method: str | None, data: str | None,
        config_file: Path | None, alias: str | None, progress: bool) -> None:
    """Train a LoRA adapter, evaluate it against the base model, register it."""
    from llmops.finetune import finetune as run_finetune
    from llmops.finetune import launch_command, load_finetune_config
    from llmops.finetune.launch import needs_launch
    from llmops.processes import die_with_parent

    settings = settings_from(ctx)
    config = load_finetune_config(config_file, settings, base_model=base, method=method,
                                  data=data, alias=alias)
    if needs_launch(config):
        cmd = launch_command(config, _script_args(
            (ctx.find_root().obj or {}).get("env"), base, method, data, config_file, alias, progress))
        click.echo(f"launching {config.distributed.num_processes} processes: {' '.join(cmd)}",
                   err=True)
        # the launcher (and the training processes it starts) dies with this command
        ctx.exit(subprocess.call(cmd, preexec_fn=die_with_parent))  # noqa: PLW1509
    result = run_finetune(settings, config=config, progress=progress,
                          echo=lambda line: click.echo(line, err=True))
    m = result.metrics
    where = {"heldout": "held-out rows", "train": "training rows"}.get(
        result.eval_split, f"rows of {result.eval_split}")
    click.echo(f"token F1 on {int(m['eval_rows'])} {where}: base {m['eval_base_token_f1']:.3f}"
               f" -> adapter {m['eval_adapter_token_f1']:.3f}")
    if "eval_adapter_fact_hit" in m:
        click.echo(f"fact hit on the same rows: base {m['eval_base_fact_hit']:.3f} -> adapter "
                   f"{m['eval_adapter_fact_hit']:.3f}")
    if "train_adapter_token_f1" in m and result.eval_split != "train":
        click.echo(f"token F1 on the training rows: base {m['train_base_token_f1']:.3f} -> "
                   f"adapter {m['train_adapter_token_f1']:.3f}")
    click.echo(f"trained {result.train_rows} rows at {m['train_tokens_per_s']:.0f} tokens/s")
    suffix = f", alias {result.alias}" if result.alias else ""
    click.echo(f"registered {result.model_name}/{result.version} (served as "
               f"{result.served_name}{suffix})")
    click.echo(f"run {result.run_id}")


@finetune.command()
@click.argument("name")
@click.option("--alias", "alias_name", required=True, help="Alias to move (e.g. production).")
@click.option("--version", type=int, default=None, help="Version to point at (default: latest).")
@env_option
@click.pass_context
def promote(ctx: click.Context, name: str, alias_name: str, version: int | None) -> None:
    """Move the adapter NAME@ALIAS to a version, recording who moved it and when."""
    from llmops.finetune import promote_adapter

    target = promote_adapter(name, alias_name, version, settings=settings_from(ctx))
    click.echo(f"{name}@{alias_name} -> {name}/{target}")
