"""``llmops serve`` engine options: a local model folder and the GPU settings reach vLLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.errors import ConfigError
from llmops.serving.config import load_endpoint_config
from llmops.serving.engine import engine_command
from llmops.serving.server import _override_engine
from tests.conftest import run_cli
from tests.serving.vllm_cli import vllm_parse


def test_gpu_settings_and_a_local_model_reach_the_vllm_command(settings, models_dir: Path) -> None:
    folder = next(models_dir.glob("tiny-*"))
    config = load_endpoint_config(settings)
    engine = _override_engine(config, {
        "model": str(folder), "attention_backend": "TRITON_ATTN", "gpu_memory_utilization": 0.85,
        "max_num_seqs": 512, "api_server_count": 4, "dtype": "bfloat16",
        "extra_args": ["--enable-prefix-caching"]}, settings)
    args = vllm_parse(engine_command(engine, engine.model))
    assert args.model == str(folder)
    assert (args.attention_backend, args.gpu_memory_utilization, args.max_num_seqs,
            args.api_server_count, args.dtype) == ("TRITON_ATTN", 0.85, 512, 4, "bfloat16")
    assert args.enable_prefix_caching is True


def test_bad_engine_options(settings, tmp_path: Path) -> None:
    config = load_endpoint_config(settings)
    with pytest.raises(ConfigError, match="no model folder there"):
        _override_engine(config, {"model": str(tmp_path / "nope")}, settings)
    with pytest.raises(ConfigError, match="engine option 'max_num_seqs'"):
        _override_engine(config, {"max_num_seqs": 0}, settings)


def test_cli_refuses_a_missing_model_folder(project: Path) -> None:
    out = run_cli("serve", "--model", "./models/missing", cwd=project, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("error: --model ./models/missing: no model")
    bad = run_cli("serve", "--gpu-memory-utilization", "1.5", cwd=project, timeout=120)
    assert bad.returncode == 2
