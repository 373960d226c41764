from __future__ import annotations

from pathlib import Path

import pytest

from llmops.config import load_settings
from llmops.errors import ConfigError
from llmops.serving.auth import load_keys
from llmops.serving.config import AuthConfig, EngineConfig, load_endpoint_config
from llmops.serving.engine import engine_command


def test_engine_command_passes_gpu_settings_through() -> None:
    cfg = EngineConfig(tensor_parallel_size=2, gpu_memory_utilization=0.85, max_num_seqs=256,
                       dtype="bfloat16", attention_backend="TRITON_ATTN", api_server_count=4,
                       max_lora_rank=32, extra_args=["--enforce-eager"])
    cmd = engine_command(cfg, "/models/llama", {"docs-qa-lora": "/adapters/v3"})
    joined = " ".join(cmd)
    for part in ("--model /models/llama", "--served-model-name base", "--dtype bfloat16",
                 "--tensor-parallel-size 2", "--gpu-memory-utilization 0.85",
                 "--max-num-seqs 256", "--attention-backend TRITON_ATTN",
                 "--api-server-count 4", "--enable-lora", "--max-lora-rank 32",
                 "--lora-modules docs-qa-lora=/adapters/v3", "--enforce-eager"):
        assert part in joined
    plain = " ".join(engine_command(EngineConfig(enable_lora=False), "m"))
    assert "--tensor-parallel-size" not in plain and "--enable-lora" not in plain


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
    monkeypatch.setenv("KEYS", "secret-value=everything")
    with pytest.raises(ConfigError) as err:
        load_keys(AuthConfig(keys_env="KEYS"), tmp_path)
    assert "secret-value" not in str(err.value)
    monkeypatch.setenv("KEYS", "")
    with pytest.raises(ConfigError, match="requires API keys"):
        load_keys(AuthConfig(keys_env="KEYS", required=True), tmp_path)
