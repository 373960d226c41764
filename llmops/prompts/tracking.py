"""Prompt work in a notebook: try a prompt on inputs, compare versions side by side.

Each trial is an MLflow run holding the prompt's name and version (or the
draft's text), the inputs, the outputs and their latency.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmops.config import Settings, load_settings
from llmops.prompts.registry import get_version, to_template
from llmops.prompts.templates import PromptTemplate
from llmops.stores import connect

if TYPE_CHECKING:
    import pandas as pd
    from langchain_core.language_models.chat_models import BaseChatModel

__all__ = ["PromptTrial", "compare_prompts", "try_prompt"]


@dataclass
class PromptTrial:
    """The outcome of :func:`try_prompt`: the MLflow run and a table of results."""

    run_id: str
    prompt: str
    prompt_version: str
    results: pd.DataFrame

    @property
    def outputs(self) -> list[str]:
        return list(self.results["output"])

    def _repr_html_(self) -> str:
        head = f"<p><b>{self.prompt}</b> (version {self.prompt_version}), run <code>{self.run_id}</code></p>"
        return head + self.results._repr_html_()  # type: ignore[operator]


PromptLike = str | PromptTemplate | list[dict[str, str]]


def _resolve(prompt: PromptLike, settings: Settings) -> tuple[PromptTemplate, str, Any]:
    """(template, version label, registry version or None) for a reference or a draft."""
    if isinstance(prompt, PromptTemplate):
        return prompt, "draft", None
    if isinstance(prompt, list) or (isinstance(prompt, str) and "{{" in prompt):
        return PromptTemplate.draft(prompt), "draft", None
    version = get_version(prompt, settings)
    return to_template(version), str(version.version), version


def _default_chat_model(settings: Settings) -> BaseChatModel:
    from llmops.models.chat_models import build_chat_model

    return build_chat_model(settings.chat_model, settings.models_dir, settings.root / "docs")


def _to_messages(rendered: str | list[dict[str, str]]) -> Any:
    if isinstance(rendered, str):
        return rendered
    return [(m["role"], m["content"]) for m in rendered]


def try_prompt(
    prompt: PromptLike,
    inputs: list[dict[str, Any]],
    chat_model: BaseChatModel | None = None,
    settings: Settings | None = None,
    run_name: str | None = None,
) -> PromptTrial:
    """Run ``prompt`` (``qa@production``, ``qa/2``, or a draft template) on every input.

    Returns the trial with its MLflow run id and a DataFrame of inputs, outputs
    and latencies; the run records the prompt name and version too.
    """
    import mlflow
    import pandas as pd

    settings = settings or load_settings()
    template, version_label, registered = _resolve(prompt, settings)
    for row in inputs:  # validate every input before any run is created
        template.format(**row)
    model = chat_model or _default_chat_model(settings)
    connect(settings)
    records = []
    for row in inputs:
        start = time.perf_counter()
        output = model.invoke(_to_messages(template.format(**row)))
        latency_ms = (time.perf_counter() - start) * 1000
        records.append(
            {**row, "output": str(getattr(output, "content", output)), "latency_ms": latency_ms}
        )
    results = pd.DataFrame.from_records(records)
    label = f"{template.name}/{version_label}"
    nested = mlflow.active_run() is not None
    with mlflow.start_run(run_name=run_name or f"try-{label}", nested=nested) as run:
        mlflow.set_tags({"llmops.kind": "prompt_trial"})
        mlflow.log_params(
            {
                "prompt_name": template.name,
                "prompt_version": version_label,
                "chat_model": getattr(model, "_llm_type", type(model).__name__),
                "n_inputs": len(inputs),
            }
        )
        if registered is None:
            mlflow.log_text(json.dumps(template.template, indent=2), "draft_template.json")
        else:
            from mlflow import MlflowClient

            MlflowClient().link_prompt_version_to_run(run.info.run_id, registered)
        mlflow.log_table(results, "prompt_trial.json")
        lat = list(results["latency_ms"]) or [0.0]
        mlflow.log_metrics(
            {
                "latency_ms_mean": statistics.fmean(lat),
                "latency_ms_p50": statistics.median(lat),
                "latency_ms_max": max(lat),
            }
        )
    return PromptTrial(run.info.run_id, template.name, version_label, results)


def compare_prompts(
    prompts: list[PromptLike],
    inputs: list[dict[str, Any]],
    chat_model: BaseChatModel | None = None,
    settings: Settings | None = None,
) -> pd.DataFrame:
    """Try several prompts on the same inputs; one row per input, one output column per prompt.

    Each prompt gets its own (nested) run; the parent run holds the comparison table.
    """
    import mlflow
    import pandas as pd

    settings = settings or load_settings()
    model = chat_model or _default_chat_model(settings)
    connect(settings)
    table = pd.DataFrame.from_records(inputs)
    with mlflow.start_run(run_name="compare-prompts") as parent:
        mlflow.set_tags({"llmops.kind": "prompt_comparison"})
        labels = []
        for prompt in prompts:
            trial = try_prompt(prompt, inputs, chat_model=model, settings=settings)
            label = f"{trial.prompt}/{trial.prompt_version}"
            if label in labels:
                label = f"{label}#{len(labels)}"
            labels.append(label)
            table[label] = trial.results["output"].values
            table[f"{label} latency_ms"] = trial.results["latency_ms"].round(1).values
        mlflow.log_param("prompts", ", ".join(labels))
        mlflow.log_table(table, "comparison.json")
    table.attrs["run_id"] = parent.info.run_id
    return table
