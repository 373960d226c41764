"""Monitoring: request volume, errors, latency and feedback per version, against thresholds.

A run reads a time window of ``inference_log`` and ``feedback``, computes per
group (chain, prompt, model and adapter versions) and overall: requests, error
rate (5xx), latency p50/p95, thumbs-up rate, mean 1-5 score and feedback
coverage; writes one ``monitoring`` row per group, MLflow metrics and a plot,
and reports every threshold crossed so the caller can fail (and a scheduler
trigger retraining).
"""

from __future__ import annotations

import json
import math
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.config import Settings, load_settings
from llmops.evals.config import MonitorConfig, load_monitor_config
from llmops.stores import connect

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MonitorReport", "run_monitor"]

ALL = "all"


@dataclass
class MonitorReport:
    run_id: str
    window_start: datetime
    window_end: datetime
    groups: list[dict[str, Any]] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)
    plot: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.breaches

    @property
    def overall(self) -> dict[str, Any]:
        return next(g for g in self.groups if g["group"] == ALL)


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _stats(log: pd.DataFrame, fb: pd.DataFrame) -> dict[str, Any]:
    requests = len(log)
    errors = int((log["status"].fillna(0) >= 500).sum()) if requests else 0
    lat = log.loc[log["status"] == 200, "latency_ms"].dropna()
    mine = fb[fb["request_id"].isin(set(log["request_id"]))] if requests else fb.iloc[0:0]
    thumbs = mine["rating"].dropna()
    scores = mine["score"].dropna()
    return {
        "requests": requests, "errors": errors,
        "error_rate": errors / requests if requests else None,
        "latency_p50_ms": _num(lat.quantile(0.5)) if len(lat) else None,
        "latency_p95_ms": _num(lat.quantile(0.95)) if len(lat) else None,
        "thumbs": len(thumbs),
        "thumbs_up_rate": float((thumbs > 0).mean()) if len(thumbs) else None,
        "mean_score": float(scores.mean()) if len(scores) else None,
        "feedback_coverage": mine["request_id"].nunique() / requests if requests else None,
    }


def _breaches(label: str, stats: dict[str, Any], cfg: MonitorConfig) -> list[str]:
    if stats["requests"] < cfg.min_requests:
        return []
    out = []

    def over(value: float | None, limit: float | None, what: str, above: bool) -> None:
        if value is None or limit is None:
            return
        if (value > limit) if above else (value < limit):
            out.append(f"{label}: {what} {value:.3g} is {'above' if above else 'below'} {limit:g}")

    over(stats["error_rate"], cfg.max_error_rate, "error rate", True)
    over(stats["latency_p95_ms"], cfg.max_latency_p95_ms, "latency p95 (ms)", True)
    if stats["thumbs"] >= 3:
        over(stats["thumbs_up_rate"], cfg.min_thumbs_up_rate, "thumbs-up rate", False)
    over(stats["mean_score"], cfg.min_mean_score, "mean score", False)
    over(stats["feedback_coverage"], cfg.min_feedback_coverage, "feedback coverage", False)
    return out


def _label(key: tuple[Any, ...], columns: list[str]) -> str:
    parts = [f"{c}={v}" for c, v in zip(columns, key, strict=False) if v not in (None, "") and v == v]
    return ",".join(parts) or "unversioned"


def _plot(log: pd.DataFrame, fb: pd.DataFrame, columns: list[str], start: datetime,
          end: datetime, out: Path) -> Path:
    """Thumbs-up rate and median latency over the window, one line per version."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    bucket = pd.Timedelta(max((end - start) / 12, timedelta(minutes=1)))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    ratings = fb.dropna(subset=["rating"]).drop_duplicates("request_id", keep="last")
    if len(log):
        log = log.assign(bucket=log["ts"].dt.floor(bucket), version=[
            _label(tuple(r), columns) for r in log[columns].itertuples(index=False)])
        for version, part in log.groupby("version"):
            lat = part[part["status"] == 200].groupby("bucket")["latency_ms"].median()
            ax2.plot(lat.index, lat.values, marker="o", label=version)
            joined = part.merge(ratings[["request_id", "rating"]], on="request_id")
            if len(joined):
                up = joined.groupby("bucket")["rating"].apply(lambda r: float((r > 0).mean()))
                ax1.plot(up.index, up.values, marker="o", label=version)
    ax1.set_ylabel("thumbs-up rate")
    ax1.set_ylim(-0.05, 1.05)
    ax2.set_ylabel("latency p50 (ms)")
    ax2.set_xlabel("time (UTC)")
    for ax in (ax1, ax2):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"llmops monitoring {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def run_monitor(settings: Settings | None = None, config: MonitorConfig | None = None,
                end: datetime | None = None, start: datetime | None = None,
                record: bool = True) -> MonitorReport:
    """Compute the window's figures, write them, and list every threshold crossed."""
    import mlflow

    from llmops.lakehouse import append_rows, read_table

    settings = settings or load_settings()
    config = config or load_monitor_config(settings)
    end = end or datetime.now(timezone.utc)
    start = start or end - timedelta(hours=config.window_hours)
    # only the window's requests, only the columns the figures need; feedback comes after
    # the request it rates, so none older than the window counts
    log = read_table(settings.lakehouse, "inference_log",
                     columns=sorted({"request_id", "ts", "status", "latency_ms",
                                     *config.group_by}), since=start, until=end)
    fb = read_table(settings.lakehouse, "feedback",
                    columns=["request_id", "ts", "rating", "score"], since=start)
    fb = fb.sort_values("ts").drop_duplicates("request_id", keep="last") if len(fb) else fb
    columns = list(config.group_by)

    report = MonitorReport(run_id="", window_start=start, window_end=end)
    overall = {"group": ALL, **_stats(log, fb)}
    report.groups.append(overall)
    report.breaches += _breaches("overall", overall, config)
    if len(log):
        keyed = log.assign(**{c: log[c].fillna("") for c in columns})
        for key, part in keyed.groupby(columns, sort=True):
            label = _label(key if isinstance(key, tuple) else (key,), columns)
            stats = {"group": label, **_stats(part, fb)}
            report.groups.append(stats)
            report.breaches += _breaches(label, stats, config)

    connect(settings)
    with mlflow.start_run(run_name="monitor") as run:
        report.run_id = run.info.run_id
        mlflow.set_tags({"llmops.monitor.status": "alert" if report.breaches else "ok",
                         "llmops.monitor.window": f"{start.isoformat()}/{end.isoformat()}"})
        mlflow.log_metrics({k: float(v) for k, v in overall.items()
                            if k != "group" and v is not None})
        if report.breaches:
            mlflow.log_text("\n".join(report.breaches), "breaches.txt")
        with tempfile.TemporaryDirectory() as tmp:
            plot = _plot(log, fb, columns, start, end, Path(tmp) / "monitoring.png")
            mlflow.log_artifact(str(plot))
            saved = settings.state_dir / "monitoring" / f"{run.info.run_id}.png"
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_bytes(plot.read_bytes())
            report.plot = saved
    if record:

        now = datetime.now(timezone.utc)
        rows = []
        for g in report.groups:
            mine = [b for b in report.breaches
                    if b.startswith("overall:" if g["group"] == ALL else f"{g['group']}:")]
            rows.append({
                "run_id": report.run_id, "ts": now, "window_start": start, "window_end": end,
                "group": g["group"], "requests": int(g["requests"]), "errors": int(g["errors"]),
                **{k: g[k] for k in ("error_rate", "latency_p50_ms", "latency_p95_ms",
                                     "thumbs_up_rate", "mean_score", "feedback_coverage")},
                "breaches": json.dumps(mine), "status": "alert" if mine else "ok",
            })
        append_rows(settings.lakehouse, "monitoring", rows,
                    commit_metadata={"llmops.monitor_run": report.run_id or uuid.uuid4().hex})
    return report
