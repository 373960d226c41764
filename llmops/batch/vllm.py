"""vLLM inside a Ray batch job (``ray.data.llm``): the stages that generate each row's answer.

A worker upstream (a chain run up to its chat model) writes each row's :func:`engine_request`
into :data:`REQUEST_COLUMN`; :func:`vllm_stages` then runs ``ray.data.llm``'s vLLM processor
(the model's chat template, then the engine in its own Ray actors, on GPUs where the cluster
has them, else on vLLM's CPU build), through a LoRA adapter where one is named, and puts each
text in its row's ``answer``. A row that failed upstream keeps its error (the engine gets a
1-token stub for it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from llmops.config import Settings
from llmops.errors import BatchError, LlmopsError
from llmops.registry import model_version

__all__ = ["REQUEST_COLUMN", "engine_model", "engine_request", "guard_worker", "load_deferred",
           "vllm_stages"]

#: the column that carries a row's request to the engine (dropped before the output)
REQUEST_COLUMN = "_llm_request"
# an answer for a row that failed before its prompt existed: the engine gets a 1-token stub
_STUB = [{"role": "user", "content": "-"}]


def load_deferred(settings: Settings, name: str, version: str) -> tuple[Any, Any]:
    """The registered model ``name``/``version`` loaded with its chat models deferred, and the
    record of the calls it makes (:func:`llmops.models.chat_models.deferred_chat_models`)."""
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
    """The model folder and the LoRA adapter folder (or None) the registered model ``ref`` calls.

    Loads it as the actors do, so a chain whose chat model is an endpoint fails here, before
    any Ray work, with one clear line.
    """
    found = model_version(ref, settings)
    _, calls = load_deferred(settings, found.name, str(found.version))
    if len(set(calls.models)) != 1:
        raise BatchError(f"chain {found.name}/{found.version} builds {len(calls.models)} chat "
                         "models; vLLM in the batch job runs a chain with exactly one")
    return calls.models[0]


def engine_request(call: Any) -> str:
    """The :data:`REQUEST_COLUMN` value for one deferred chat-model call."""
    return json.dumps({"messages": call.messages, "temperature": call.temperature,
                       "max_tokens": call.max_tokens, "stop": call.stop})


def vllm_stages(model: str, adapter: str | None, id_column: str, keep: list[str],
                output_columns: Iterable[str], *, engines: int = 1, batch_size: int = 16,
                cpus_per_engine: float | None = None, kv_cache_gib: int = 1,
                engine_kwargs: dict[str, Any] | None = None) -> Any:
    """The stages after a worker that wrote each row's :func:`engine_request`: vLLM generates
    each row's ``answer``.

    ``output_columns`` are the worker's (its ``output_schema``); the rows come out with
    ``id_column``, ``keep``, those, ``error`` and ``_node``. Returns
    ``then(dataset, ray_info) -> dataset`` for :func:`llmops.batch.run_batch`. With no GPU in
    the cluster each engine runs vLLM's CPU build on ``cpus_per_engine`` CPUs (default: all
    but 1.5 of a node's, at least half of one).
    """
    columns = [id_column, *keep, *output_columns, "error", "_node"]

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
            concurrency=engines,
            # each engine's actor starts a watchdog: vLLM's EngineCore, a process of the
            # actor's own, must not outlive an actor killed with its job's driver
            runtime_env={"env_vars": env,
                         "worker_process_setup_hook": "llmops.batch.vllm.guard_worker"},
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
        request = json.loads(row[REQUEST_COLUMN]) if row.get(REQUEST_COLUMN) else None
        out = {k: v for k, v in row.items() if k != REQUEST_COLUMN}
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


def guard_worker() -> None:
    """Ray's setup hook for the engine actors' workers: stop the worker's descendants (vLLM's
    EngineCore) once the worker is gone, however it went (``llmops.processes``)."""
    from llmops.processes import guard_descendants

    guard_descendants()
