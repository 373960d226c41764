"""``llmops rollout``: canary and A/B rollouts of a chain's versions, judged by user feedback."""

from __future__ import annotations

import click

from llmops.cli.options import env_option, settings_from

__all__ = ["rollout"]


def _steps(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"'{value}': give percentages like 5,25,50,100") from None


@click.group()
def rollout() -> None:
    """Send part of a chain's traffic to a candidate version and let user feedback judge it."""


@rollout.command()
@click.argument("name")
@click.option("--candidate", required=True, metavar="ALIAS|VERSION",
              help="The version to try: an alias (staging) or a version number.")
@click.option("--steps", callback=_steps, default=None, metavar="5,25,50,100",
              help="The candidate's share of traffic at each step, in percent (100: promoted).")
@click.option("--metric", type=click.Choice(["thumbs_up"]), default="thumbs_up",
              show_default=True, help="The primary metric.")
@click.option("--guardrail", "guardrails", multiple=True,
              type=click.Choice(["error_rate", "latency_p95"]),
              help="A request metric the candidate may not be worse on (repeatable; default "
                   "both).")
@click.option("--alpha", type=float, default=None,
              help="Chance of a wrong decision between equal versions (default 0.05).")
@click.option("--min-rated", type=int, default=None,
              help="Rated answers per arm before any decision on the metric (default 50).")
@click.option("--min-rated-per-step", type=int, default=None,
              help="Rated answers of the candidate at a step before it advances (default 20).")
@click.option("--sticky-by", type=click.Choice(["user", "client"]), default=None,
              help="Keep each end user (default) or each API key on one arm.")
@click.option("--max-rated-per-subject", type=int, default=None,
              help="Rated answers one key (with the end user it names) adds to the evidence "
                   "(default 10).")
@click.option("--max-rated-per-key", type=int, default=None,
              help="Rated answers one key, all its end users together, adds (default 1000).")
@click.option("--approval", type=click.Choice(["auto", "human"]), default=None,
              help="human: wait for 'llmops rollout approve' before the promotion (default "
                   "auto).")
@click.option("--reveal-arm", is_flag=True, default=False,
              help="Name the arm and its versions in chain answers (default: hidden).")
@env_option
@click.pass_context
def start(ctx: click.Context, name: str, candidate: str, steps: list[int] | None, metric: str,
          guardrails: tuple[str, ...], alpha: float | None, min_rated: int | None,
          min_rated_per_step: int | None, sticky_by: str | None,
          max_rated_per_subject: int | None, max_rated_per_key: int | None,
          approval: str | None, reveal_arm: bool) -> None:
    """Start a rollout of chain NAME: CANDIDATE against @production.

    Running gateways pick it up within seconds; each user stays on one arm. The gateway
    judges it as ratings arrive (and so does 'llmops rollout evaluate'): promoted when users
    like the candidate better, rolled back when they like it less or a guardrail breaks.
    """
    from pydantic import ValidationError

    from llmops.errors import RolloutError
    from llmops.rollouts import RolloutSpec, start_rollout

    given = {"steps": steps, "metric": metric, "guardrails": list(guardrails) or None,
             "alpha": alpha, "min_rated": min_rated, "min_rated_per_step": min_rated_per_step,
             "sticky_by": sticky_by, "max_rated_per_subject": max_rated_per_subject,
             "max_rated_per_key": max_rated_per_key,
             "approval": approval, "reveal_arm": reveal_arm or None}
    try:
        spec = RolloutSpec(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "rollout"
        raise RolloutError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
    state = start_rollout(name, candidate, settings_from(ctx), spec)
    click.echo(f"rollout {state.rollout_id} started: {state.share}% of {name}'s traffic to "
               f"version {state.candidate}, the rest to production version {state.production}")
    click.echo(f"steps {', '.join(f'{s}%' for s in spec.steps)}; see 'llmops rollout status "
               f"{name}'")


@rollout.command()
@click.argument("name")
@click.option("--plot", "plot", type=click.Path(dir_okay=False), default=None,
              help="Where to write the plot (default .llmops/<env>/rollouts/<id>.png).")
@env_option
@click.pass_context
def status(ctx: click.Context, name: str, plot: str | None) -> None:
    """Each arm's traffic, ratings and rates with their intervals, the step and the decisions."""
    from pathlib import Path

    from llmops.errors import RolloutError
    from llmops.rollouts import latest_for_chain, plot_rollout, status_lines

    settings = settings_from(ctx)
    state = latest_for_chain(settings.lakehouse, name)
    if state is None:
        raise RolloutError(f"'{name}' has no rollout: start one with 'llmops rollout start "
                           f"{name} --candidate staging'")
    for line in status_lines(state, settings.lakehouse):
        click.echo(line)
    out = Path(plot) if plot else settings.state_dir / "rollouts" / f"{state.rollout_id}.png"
    if plot_rollout(state, settings.lakehouse, out) is not None:
        click.echo(f"plot: {out}")


@rollout.command()
@click.argument("name")
@env_option
@click.pass_context
def evaluate(ctx: click.Context, name: str) -> None:
    """Judge NAME's running rollout now and carry out the decision."""
    from llmops.rollouts import evaluate_rollout

    done = evaluate_rollout(name, settings_from(ctx))
    state = done.state
    if done.judgement is None:
        click.echo(f"rollout {state.rollout_id} has ended: {state.status}")
        return
    click.echo(f"rollout {state.rollout_id}: {done.judgement.decision} "
               f"({state.status}, {state.share}% to version {state.candidate})")
    for reason in done.judgement.reasons:
        click.echo(f"  - {reason}")


@rollout.command()
@click.argument("name")
@click.option("--reason", default="", help="Why (kept with the decision).")
@env_option
@click.pass_context
def abort(ctx: click.Context, name: str, reason: str) -> None:
    """End NAME's running rollout now: all traffic returns to production."""
    from llmops.rollouts import abort_rollout

    state = abort_rollout(name, settings_from(ctx), reason=reason)
    click.echo(f"rollout {state.rollout_id} aborted: all of {name}'s traffic goes to "
               f"production version {state.production}")


@rollout.command()
@click.argument("name")
@env_option
@click.pass_context
def approve(ctx: click.Context, name: str) -> None:
    """Promote the candidate of NAME's rollout awaiting approval (started with --approval human)."""
    from llmops.rollouts import approve_rollout

    state = approve_rollout(name, settings_from(ctx))
    click.echo(f"rollout {state.rollout_id} approved: {name}@production is version "
               f"{state.candidate}")
