"""``llmops prompts``: sync templates from git, list, show, diff, alias."""

from __future__ import annotations

import json
from pathlib import Path

import click

from llmops.cli.options import env_option, settings_from

__all__ = ["prompts"]


@click.group()
def prompts() -> None:
    """Prompt templates: git files and registry versions."""


@prompts.command()
@click.argument("folder", required=False, type=click.Path(path_type=Path))
@env_option
@click.pass_context
def sync(ctx: click.Context, folder: Path | None) -> None:
    """Register a new version of every template in FOLDER (default prompts/) that changed."""
    from llmops.prompts import sync_prompts

    settings = settings_from(ctx)
    report = sync_prompts(settings, folder)
    for name, version in report.registered:
        click.echo(f"registered {name}/{version}")
    for name, version in report.unchanged:
        click.echo(f"unchanged  {name}/{version}")
    click.echo(f"{len(report.registered)} registered, {len(report.unchanged)} unchanged")


@prompts.command("list")
@env_option
@click.pass_context
def list_(ctx: click.Context) -> None:
    """List registered prompts with their latest version and aliases."""
    from llmops.prompts import list_prompts

    infos = list_prompts(settings_from(ctx))
    if not infos:
        click.echo("no prompts registered: run 'llmops prompts sync'")
        return
    click.echo(f"{'NAME':<24} {'LATEST':>6}  ALIASES")
    for info in infos:
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(info.aliases.items())) or "-"
        click.echo(f"{info.name:<24} {info.latest_version:>6}  {aliases}")


@prompts.command()
@click.argument("ref")
@env_option
@click.pass_context
def show(ctx: click.Context, ref: str) -> None:
    """Show a prompt version: REF is NAME, NAME@ALIAS or NAME/VERSION."""
    from mlflow import MlflowClient

    from llmops.prompts import get_version
    from llmops.prompts.templates import template_text

    version = get_version(ref, settings_from(ctx))
    aliases = MlflowClient().get_prompt_version(version.name, version.version).aliases or []
    click.echo(f"{version.name}/{version.version}" + (f"  ({', '.join(aliases)})" if aliases else ""))
    if version.commit_message:
        click.echo(f"description: {version.commit_message}")
    for key, value in sorted((version.tags or {}).items()):
        click.echo(f"tag {key}: {value}")
    if version.model_config:
        click.echo(f"model parameters: {json.dumps(version.model_config, sort_keys=True)}")
    click.echo("")
    click.echo(template_text(version.template), nl=False)


@prompts.command()
@click.argument("name")
@click.argument("v1", type=int)
@click.argument("v2", type=int)
@env_option
@click.pass_context
def diff(ctx: click.Context, name: str, v1: int, v2: int) -> None:
    """Unified diff between versions V1 and V2 of prompt NAME."""
    from llmops.prompts import diff_versions

    text = diff_versions(name, v1, v2, settings_from(ctx))
    click.echo(text or f"{name}/{v1} and {name}/{v2} are identical", nl=not text)


@prompts.command()
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version", type=int)
@env_option
@click.pass_context
def alias(ctx: click.Context, name: str, alias_name: str, version: int) -> None:
    """Point NAME@ALIAS at VERSION."""
    from llmops.prompts import set_alias

    set_alias(name, alias_name, version, settings_from(ctx))
    click.echo(f"{name}@{alias_name} -> {name}/{version}")


@prompts.command()
@click.argument("name")
@click.option("--from-feedback", "from_feedback", is_flag=True, required=True,
              help="Learn from the environment's feedback (corrections as expected answers, "
                   "answers rated good as good ones); the only source for now, so required.")
@click.option("--optimizer", type=click.Choice(["fewshot", "gepa"]), default="fewshot",
              show_default=True,
              help="fewshot: demonstrations chosen by their held-out score (works with a small "
                   "model); gepa: a reflection model rewrites the instructions (GEPA).")
@click.option("--budget", type=click.IntRange(1, 200), default=8, show_default=True,
              help="Candidate prompts scored on the held-out examples.")
@click.option("--base", "base_ref", default=None, metavar="REF",
              help="The version to improve (default NAME@production, else the latest).")
@click.option("--chain-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The chain the prompt serves in: its retriever and chat model answer the "
                   "candidates (default chains/docs_qa.py).")
@click.option("--chain", default=None, help="Only feedback on answers of this chain.")
@click.option("--endpoint", default=None, metavar="URL",
              help="Ask the candidates through this OpenAI-compatible endpoint (…/v1), e.g. "
                   "the running engine; default the environment's chat model.")
@click.option("--model", default=None, help="Model name at --endpoint (default base).")
@click.option("--reflection-endpoint", default=None, metavar="URL",
              help="GEPA's reflection model: any OpenAI-compatible endpoint (default "
                   "--endpoint, else the environment's chat model).")
@click.option("--reflection-model", default=None, help="Model name at --reflection-endpoint.")
@click.option("--heldout", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="Score on these examples (JSON lines: question, expected) "
                                 "instead of a share of the feedback.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the search.")
@env_option
@click.pass_context
def optimize(ctx: click.Context, name: str, from_feedback: bool, optimizer: str, budget: int,
             base_ref: str | None, chain_file: Path | None, chain: str | None,
             endpoint: str | None, model: str | None, reflection_endpoint: str | None,
             reflection_model: str | None, heldout: Path | None, seed: int) -> None:
    """Search a better version of prompt NAME on feedback and register it (no alias moves).

    The feedback's examples are split by question into a set to search with and a held-out
    set; the base prompt and each candidate are scored there (token F1 against the expected
    answers). The best candidate, if it beats the base, is registered as a new version tagged
    with its lineage; log a chain with it (`llmops chains log --prompt NAME/V`), gate it and
    roll it out as any other candidate.
    """
    from llmops.optimize import OptimizeConfig, optimize_prompt

    settings = settings_from(ctx)
    config = OptimizeConfig(optimizer=optimizer, budget=budget, endpoint=endpoint, model=model,
                            reflection_endpoint=reflection_endpoint,
                            reflection_model=reflection_model, seed=seed,
                            heldout=str(heldout) if heldout else None)
    result = optimize_prompt(name, settings, config, base_ref=base_ref, chain_file=chain_file,
                             chain=chain, echo=click.echo)
    summary = (f"held-out token F1 {result.base_score:.3f} -> {result.best_score:.3f} "
               f"({result.gain:+.3f}); {result.candidates} candidates, {result.model_calls} "
               f"model calls, {result.seconds:.0f} s")
    if result.registered_version is None:
        click.echo(f"no better prompt than {result.prompt}/{result.base_version}: {summary}")
        return
    click.echo(f"registered {result.prompt}/{result.registered_version} (from "
               f"{result.prompt}/{result.base_version}, {result.optimizer}): {summary}")
