"""The public API is explicit and ``import llmops`` stays cheap."""

from __future__ import annotations

import subprocess
import sys

import llmops.chains
import llmops.models
import llmops.prompts


def test_prompts_exports() -> None:
    assert set(llmops.prompts.__all__) == {
        "ChatMessage", "PromptFile", "PromptInfo", "PromptTemplate", "PromptTrial", "SyncReport",
        "compare_prompts", "diff_versions", "get_version", "list_prompts", "load",
        "read_prompt_dir", "read_prompt_file", "register_version", "set_alias", "sync_prompts",
        "to_langchain",
        "to_template", "try_prompt",
    }


def test_chains_exports() -> None:
    assert set(llmops.chains.__all__) == {
        "ChainConfig", "ChainModel", "LocalChatModel", "LoggedChain", "ResolvedPrompt",
        "RetrieverConfig", "ask", "build_chat_model", "build_qa_chain", "chain_chat_model",
        "chain_config", "chain_prompt", "chain_retriever", "chain_versions", "format_context",
        "invoke", "load", "load_at_endpoint", "log_chain", "model_version", "promote",
        "resolve_prompt", "resolve_retriever",
    }


def test_indexing_and_lakehouse_exports() -> None:
    import llmops.indexing
    import llmops.lakehouse

    assert set(llmops.indexing.__all__) == {
        "IndexConfig", "IndexReport", "IndexRetriever", "current_index_version", "update_index",
    }
    assert set(llmops.lakehouse.__all__) == {
        "LakehouseError", "LakehouseLockTimeout", "TABLES", "TableAppender", "TableChanged",
        "append_rows", "check_row", "inference_row", "is_remote", "lakehouse_lock",
        "name_and_version", "open_table", "optimize_tables", "read_table", "retain_tables",
        "schema", "table_exists", "table_path", "vacuum_tables",
    }
    assert set(llmops.lakehouse.TABLES) == {
        "inference_log", "feedback", "eval_results", "index_runs", "monitoring", "rollouts"}


def test_batch_exports() -> None:
    import llmops.batch

    assert set(llmops.batch.__all__) == {
        "BatchResult", "BatchWorker", "RayInfo", "committed_ids", "engine_model", "input_kind",
        "ray_session", "read_input", "run_batch", "vllm_stages",
    }


def test_models_exports() -> None:
    assert set(llmops.models.__all__) == {
        "DEFAULT_MODEL", "OFFLINE_MODELS", "SMOLLM2", "TINY", "BuiltModel", "LocalChatModel",
        "TinyModelConfig", "build_chat_model", "build_model", "build_smollm2", "build_tiny_model",
        "ensure_model", "ensure_smollm2", "ensure_tiny_model", "list_models", "resolve_model",
        "smollm2_model_id", "tiny_model_id",
    }
    assert llmops.models.DEFAULT_MODEL == "smollm2"


def test_serving_exports() -> None:
    import llmops.serving

    assert set(llmops.serving.__all__) == {
        "AuthConfig", "EndpointConfig", "Engine", "EngineConfig", "Gateway", "GatewayConfig",
        "WriteAheadLog", "build_gateway", "engine_command", "load_endpoint_config", "serve",
    }


def test_feedback_exports() -> None:
    import llmops.feedback

    assert set(llmops.feedback.__all__) == {
        "DatasetReport", "FeedbackWidget", "NotebookAnswer", "build_dataset", "feedback_widget",
        "record_feedback", "redact_personal_data",
    }


def test_registry_exports() -> None:
    import llmops.registry

    assert set(llmops.registry.__all__) == {
        "ADAPTER_KIND", "CHAIN_KIND", "KIND_TAG", "AdapterVersion", "Ref", "adapter_served_name",
        "adapter_version", "check_name_free", "load_adapter", "model_version", "parse_ref",
        "promote", "promote_adapter",
    }
    # the names that moved down stay importable where users found them
    assert llmops.chains.promote is llmops.registry.promote
    assert llmops.chains.LocalChatModel is llmops.models.LocalChatModel


def test_evals_exports() -> None:
    import llmops.evals

    assert set(llmops.evals.__all__) == {
        "EvalDataset", "EvalReport", "GateConfig", "GateResult", "MetricRule", "MonitorConfig",
        "MonitorReport", "check_compliance", "compare_reports", "default_scorers",
        "evaluate_chain", "exact_match_score", "judge_scorer", "load_eval_dataset",
        "load_gate_config", "load_monitor_config", "normalize_answer", "run_gate", "run_monitor",
        "token_f1",
    }


def test_every_export_exists() -> None:
    import llmops.batch
    import llmops.evals
    import llmops.feedback
    import llmops.indexing
    import llmops.lakehouse
    import llmops.registry
    import llmops.serving

    for module in (llmops.prompts, llmops.chains, llmops.models, llmops.indexing, llmops.lakehouse,
                   llmops.serving, llmops.feedback, llmops.evals, llmops.registry, llmops.batch):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_import_llmops_is_cheap() -> None:
    code = (
        "import sys, llmops, llmops.config, llmops.errors, llmops.cli, llmops.prompts, llmops.chains\n"
        "import llmops.indexing, llmops.lakehouse, llmops.serving, llmops.feedback, llmops.evals\n"
        "import llmops.registry, llmops.models\n"
        "heavy = [m for m in ('torch', 'vllm', 'peft', 'chromadb', 'transformers', 'httpx')\n"
        "         if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout}"


def test_finetune_exports() -> None:
    import llmops.finetune

    assert set(llmops.finetune.__all__) == {
        "AdapterVersion", "DistributedConfig", "EvaluationConfig", "FinetuneConfig",
        "FinetuneResult", "FsdpConfig", "TrainingConfig", "TrainingData", "check_servable",
        "finetune", "inside_launcher", "launch_command", "load_adapter", "load_finetune_config",
        "load_training_data", "promote_adapter",
    }
    for name in llmops.finetune.__all__:
        assert hasattr(llmops.finetune, name), f"llmops.finetune.{name}"


def test_import_finetune_is_cheap() -> None:
    code = (
        "import sys, llmops.finetune, llmops.cli.finetune\n"
        "heavy = [m for m in ('torch', 'peft', 'trl', 'transformers', 'datasets', 'accelerate',\n"
        "                     'mlflow') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout}"


def test_privacy_exports() -> None:
    import llmops.privacy

    assert set(llmops.privacy.__all__) == {
        "ENTITIES", "RedactionSettings", "Redactor", "redacted_row", "redactor_for",
        "redacts_by_default"}
    for name in llmops.privacy.__all__:
        assert hasattr(llmops.privacy, name), name


def test_optimize_exports() -> None:
    import llmops.optimize

    assert set(llmops.optimize.__all__) == {
        "Example", "FeedbackExamples", "OptimizeConfig", "OptimizeResult", "PromptScorer",
        "feedback_examples", "fewshot_candidates", "optimize_prompt", "score_on",
        "split_examples", "with_demonstrations"}
    for name in llmops.optimize.__all__:
        assert hasattr(llmops.optimize, name), name


def test_telemetry_exports() -> None:
    import llmops.telemetry

    assert set(llmops.telemetry.__all__) == {
        "Tracing", "chat_span_name", "configure_tracing", "content_capture", "flush_tracing",
        "input_messages", "output_messages", "set_usage", "shutdown_tracing", "tracer"}
    for name in llmops.telemetry.__all__:
        assert hasattr(llmops.telemetry, name), name
