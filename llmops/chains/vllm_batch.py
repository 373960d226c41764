"""Batch inference with vLLM inside the Ray job (``ray.data.llm``): no endpoint to run.

A chain is split where it calls its chat model:

1. on the batch actors, the chain runs with its chat model deferred
   (:func:`llmops.models.chat_models.deferred_chat_models`): retrieval and the prompt, no
   generation. Each row gets the messages the model would be sent, its sampling settings,
   the sources and the versions;
2. ``ray.data.llm``'s vLLM processor (the model's chat template, then the engine in its own
   Ray actors, on GPUs where the cluster has them, else on vLLM's CPU build) generates the
   texts, through the chain's LoRA adapter where it names one;
3. each text becomes its row's answer.

Only a chain that answers with its chat model's text (one call, nothing parsed after it), as
:func:`llmops.chains.qa.build_qa_chain` makes, can run this way; any other row gets a clear
error. The rest is the one batch path: ids, resume, error share, commits, MLflow figures.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from llmops.batch import BatchWorker
from llmops.chains.batch import ChainWorker, ask
from llmops.config import Settings
from llmops.errors import BatchError, LlmopsError
from llmops.registry import model_version

__all__ = ["PromptWorker", "engine_model", "vllm_stages"]

_REQUEST = "_llm_request"
# an answer for a row that failed before its prompt existed: the engine gets a 1-token stub
_STUB = [{"role": "user", "content": "-"}]


def _load_deferred(settings: Settings, name: str, version: str) -> tuple[Any, Any]:
    import mlflow.pyfunc

    from llmops.models.chat_models import deferred_chat_models
    from llmops.stores import connect

    connect(settings)
    with deferred_chat_models() as calls:
        try:
            model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        except Exception as exc:
            # MLflow wraps what the chain's code raised: give the user our own one line
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, LlmopsError):
                raise cause from None
            raise
    return model, calls


def engine_model(settings: Settings, ref: str) -> tuple[str, str | None]:
    """The model folder and the LoRA adapter folder (or None) the chain ``ref`` calls.

    Loads the chain as the actors do, so a chain whose chat model is an endpoint fails here,
    before any Ray work, with one clear line.
    """
    found = model_version(ref, settings)
    _, calls = _load_deferred(settings, found.name, str(found.version))
    if len(set(calls.models)) != 1:
        raise BatchError(f"chain {found.name}/{found.version} builds {len(calls.models)} chat "
                         "models; vLLM in the batch job runs a chain with exactly one")
    return calls.models[0]


class PromptWorker(BatchWorker):
    """The chain up to its chat model, once per actor: retrieval and prompt for each row."""

    # the job's output columns (the engine stage fills ``answer``)
    output_schema: ClassVar[dict[str, str]] = ChainWorker.output_schema

    def __init__(self, settings: Settings, name: str, version: str,
                 question_column: str = "question") -> None:
        self.model, self.calls = _load_deferred(settings, name, version)
        self.name, self.version, self.column = name, str(version), question_column

    def process(self, rows: Any) -> Any:
        import pandas as pd

        # one question at a time: no generation happens here, and each row's calls are its own
        return pd.DataFrame([self._one(q) for q in rows[self.column].tolist()])

    def _one(self, question: Any) -> dict[str, Any]:
        made = self.calls.made
        row = ask(self.model, question)
        request = None
        if row["error"] is None:
            calls = self.calls.made - made
            try:
                if calls != 1:
                    raise BatchError(f"the chain called its chat model {calls} times for this "
                                     "question; vLLM in the batch job needs exactly one call")
                call = self.calls.take(row["answer"])
                request = {"messages": call.messages, "temperature": call.temperature,
                           "max_tokens": call.max_tokens, "stop": call.stop}
            except Exception as exc:  # noqa: BLE001 - this row's error
                row["error"] = f"{exc.__class__.__name__}: {exc}"
        self.calls.discard()
        return {"chain": self.name, "chain_version": self.version, **row, "answer": None,
                "sources": json.dumps(row["sources"]) if row["error"] is None else None,
                _REQUEST: json.dumps(request) if request else None}


def vllm_stages(model: str, adapter: str | None, id_column: str, keep: list[str], *,
                engines: int = 1, batch_size: int = 16, cpus_per_engine: float | None = None,
                kv_cache_gib: int = 1, engine_kwargs: dict[str, Any] | None = None) -> Any:
    """The stages after :class:`PromptWorker`: vLLM generates each row's answer.

    Returns ``then(dataset, ray_info) -> dataset`` for :func:`llmops.batch.run_batch`. With
    no GPU in the cluster each engine runs vLLM's CPU build on ``cpus_per_engine`` CPUs
    (default: all but 1.5 of a node's, at least half of one).
    """
    columns = [id_column, *keep, *ChainWorker.output_schema, "error", "_node"]

    def then(ds: Any, info: Any) -> Any:
        import ray
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        from llmops.models.devices import resolve_dtype, vllm_cpu_environment

        kwargs: dict[str, Any] = {"dtype": resolve_dtype("auto"), **(engine_kwargs or {})}
        if adapter:
            kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=kwargs.get(
                "max_lora_rank", 64))
        env = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        placement = None
        if not ray.cluster_resources().get("GPU"):
            # vLLM's CPU build: its threads use the node's cores whatever Ray counts; what it
            # reserves leaves the reads and maps of the job (a CPU each, by Ray's default)
            # room to run, or the pipeline would wait on itself
            cpus = cpus_per_engine or max(0.5, info.cpus / max(1, info.nodes) - 1.5)
            placement = {"bundles": [{"CPU": cpus}]}
            env.update(VLLM_CPU_KVCACHE_SPACE=str(kv_cache_gib), VLLM_CPU_NUM_OF_RESERVED_CPU="0",
                       **vllm_cpu_environment())
        light = {"num_cpus": 0.1, "concurrency": 1}
        config = vLLMEngineProcessorConfig(
            model_source=model, engine_kwargs=kwargs, batch_size=batch_size,
            concurrency=engines, runtime_env={"env_vars": env},
            placement_group_config=placement, should_continue_on_error=True,
            # its metrics need ray[serve], which the batch extra does not install
            log_engine_metrics=False,
            chat_template_stage=light, tokenize_stage=False, detokenize_stage=False)
        # the row reshaping is light: a tenth of a CPU each, so that on a small node it never
        # waits behind the CPUs the actors and the engine hold
        light_map = {"num_cpus": 0.1}
        processor = build_processor(config, preprocess=_to_engine(adapter),
                                    postprocess=_from_engine(columns),
                                    preprocess_map_kwargs=light_map,
                                    postprocess_map_kwargs=light_map)
        return processor(ds).map(_finish(columns), **light_map)

    return then


def _to_engine(adapter: str | None) -> Any:
    def preprocess(row: dict[str, Any]) -> dict[str, Any]:
        request = json.loads(row[_REQUEST]) if row.get(_REQUEST) else None
        out = {k: v for k, v in row.items() if k != _REQUEST}
        out["messages"] = request["messages"] if request else _STUB
        params: dict[str, Any] = {"temperature": request["temperature"] if request else 0.0,
                                  "max_tokens": request["max_tokens"] if request else 1}
        if request and request.get("stop"):
            params["stop"] = request["stop"]
        out["sampling_params"] = params
        if adapter:
            out["model"] = adapter
        return out

    return preprocess


def _from_engine(columns: list[str]) -> Any:
    def postprocess(data: dict[str, Any]) -> dict[str, Any]:
        out = {k: data.get(k) for k in columns}
        if out["error"] is None:
            out["answer"] = data.get("generated_text", "")
            if out.get("latency_ms") is not None and data.get("time_taken_llm") is not None:
                # the prompt's time on the actor, plus the row's time in the engine
                out["latency_ms"] = float(out["latency_ms"]) + float(data["time_taken_llm"]) * 1000
        return out

    return postprocess


def _finish(columns: list[str]) -> Any:
    def finish(row: dict[str, Any]) -> dict[str, Any]:
        out = {k: row.get(k) for k in columns}
        failed = row.get("__inference_error__") or ""
        if failed and out["error"] is None:
            out["error"] = f"vLLM: {str(failed)[:500]}"
        if out["error"] is not None:
            out["answer"] = None
        return out

    return finish
