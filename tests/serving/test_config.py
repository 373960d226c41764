from __future__ import annotations

from pathlib import Path

import pytest

from llmops.config import load_settings
from llmops.errors import ConfigError
from llmops.serving.auth import load_keys
from llmops.serving.config import AuthConfig, EngineConfig, load_endpoint_config
from llmops.serving.engine import engine_command
from tests.serving.vllm_cli import vllm_parse


def test_engine_command_passes_gpu_settings_through() -> None:
    cfg = EngineConfig(tensor_parallel_size=2, gpu_memory_utilization=0.85, max_num_seqs=256,
                       dtype="bfloat16", attention_backend="TRITON_ATTN", api_server_count=4,
                       max_lora_rank=32, extra_args=["--enforce-eager"])
    args = vllm_parse(engine_command(cfg, "/models/llama", {"docs-qa-lora": "/adapters/v3"}))
    assert (args.model, args.served_model_name, args.dtype) == ("/models/llama", ["base"],
                                                                "bfloat16")
    assert (args.tensor_parallel_size, args.gpu_memory_utilization, args.max_num_seqs,
            args.attention_backend, args.api_server_count) == (2, 0.85, 256, "TRITON_ATTN", 4)
    assert (args.enable_lora, args.max_lora_rank, args.max_loras) == (True, 32, cfg.max_loras)
    assert [(m.name, m.path) for m in args.lora_modules] == [("docs-qa-lora", "/adapters/v3")]
    assert args.enforce_eager is True
    # loopback by default, and the key check that keeps everyone but the gateway out
    assert (args.host, args.port) == ("127.0.0.1", cfg.port)
    assert args.middleware == ["llmops.serving.engine_guard.EngineKeyCheck"]
    plain = vllm_parse(engine_command(EngineConfig(enable_lora=False), "m"))
    assert plain.tensor_parallel_size == 1 and not plain.enable_lora
    assert plain.lora_modules is None


def test_endpoint_file_per_environment(project: Path) -> None:
    (project / "serving").mkdir()
    (project / "serving" / "endpoint.yaml").write_text(
        "engine: {model: tiny, port: 8100}\n"
        "envs:\n  prod:\n    engine: {dtype: bfloat16, gpu_memory_utilization: 0.9}\n"
    )
    dev = load_endpoint_config(load_settings(root=project))
    prod = load_endpoint_config(load_settings("prod", root=project))
    assert dev.engine.dtype == "auto" and not dev.auth.required
    assert prod.engine.dtype == "bfloat16" and prod.engine.port == 8100
    assert prod.auth.required  # staging and prod never run without keys
    (project / "serving" / "endpoint.yaml").write_text("engine: {gpu_memory_utilization: 3}\n")
    with pytest.raises(ConfigError, match="engine.gpu_memory_utilization"):
        load_endpoint_config(load_settings(root=project))


def test_keys_from_env_and_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KEYS", "k1=invoke,feedback;k2=admin")
    (tmp_path / "keys.yaml").write_text("keys:\n  - {name: ci, key: k3, scopes: [feedback]}\n")
    ring = load_keys(AuthConfig(keys_env="KEYS", keys_file="keys.yaml"), tmp_path)
    assert ring.required
    k1, k2, k3 = ring.find("k1"), ring.find("k2"), ring.find("k3")
    assert ring.allows(k1, "invoke") and not ring.allows(k1, "admin")
    assert ring.allows(k2, "feedback") and k3.name == "ci" and ring.find("nope") is None
    # limits ship on: a key that sets none gets the defaults (32 in flight, 600 a minute);
    # one that sets null has none
    assert (k1.max_concurrent, k1.requests_per_minute) == (32, 600)
    assert (k3.max_concurrent, k3.requests_per_minute) == (32, 600)
    (tmp_path / "keys.yaml").write_text(
        "keys:\n  - {name: ci, key: k3, scopes: [feedback], max_concurrent: null, "
        "requests_per_minute: 5}\n")
    k3 = load_keys(AuthConfig(keys_env="KEYS", keys_file="keys.yaml"), tmp_path).find("k3")
    assert (k3.max_concurrent, k3.requests_per_minute) == (None, 5)
    monkeypatch.setenv("KEYS", "secret-value=everything")
    with pytest.raises(ConfigError) as err:
        load_keys(AuthConfig(keys_env="KEYS"), tmp_path)
    assert "secret-value" not in str(err.value)
    monkeypatch.setenv("KEYS", "")
    with pytest.raises(ConfigError, match="requires API keys"):
        load_keys(AuthConfig(keys_env="KEYS", required=True), tmp_path)
