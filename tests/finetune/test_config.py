"""Job settings: the YAML file, the peft.LoraConfig inside it, and the server's rank limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.errors import ConfigError, FinetuneError
from llmops.finetune import FinetuneConfig, check_servable, load_finetune_config

REPO = Path(__file__).resolve().parents[2]


def test_the_projects_example_config_is_valid() -> None:
    from peft import LoraConfig

    config = load_finetune_config(REPO / "finetune" / "lora.yaml")
    lora = config.lora_config()
    assert isinstance(lora, LoraConfig) and lora.task_type == "CAUSAL_LM"
    assert set(lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                        "up_proj", "down_proj"}
    assert config.registered_name == "docs-qa-lora"


def test_default_file_overrides_and_defaults(settings) -> None:
    assert load_finetune_config(None, settings) == FinetuneConfig()
    (settings.root / "finetune").mkdir()
    (settings.root / "finetune" / "lora.yaml").write_text(
        "method: kto\nlora: {r: 4, lora_alpha: 8}\ntraining: {epochs: 1}\n")
    config = load_finetune_config(None, settings, base_model="./m", method=None)
    assert (config.method, config.base_model, config.lora_rank) == ("kto", "./m", 4)
    assert config.training.epochs == 1 and config.training.learning_rate == 2e-4


@pytest.mark.parametrize("text, field", [
    ("lora: {r: 8, bogus: 1}\n", "lora"),
    ("lora: {r: 8, use_dora: true}\n", "lora"),
    ("lora: {r: 8, modules_to_save: [lm_head]}\n", "lora"),
    ("training: {epochs: 1, learnig_rate: 0.1}\n", "training.learnig_rate"),
    ("distributed: {num_processes: 2}\n", "distributed"),
    ("method: dpo\n", "method"),
])
def test_bad_fields_name_the_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "lora.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"lora\.yaml: field '{field}'"):
        load_finetune_config(path)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_finetune_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("lora: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_finetune_config(tmp_path / "bad.yaml")


def test_rank_limit_comes_from_the_endpoint_config(settings) -> None:
    assert check_servable(FinetuneConfig(), settings) == 16  # EngineConfig's default
    (settings.root / "serving").mkdir()
    (settings.root / "serving" / "endpoint.yaml").write_text("engine:\n  max_lora_rank: 8\n")
    assert check_servable(FinetuneConfig(lora={"r": 8}), settings) == 8
    with pytest.raises(FinetuneError, match=r"rank 16 is above 8, .*endpoint\.yaml"):
        check_servable(FinetuneConfig(lora={"r": 8, "rank_pattern": {"q_proj": 16}}), settings)
    with pytest.raises(FinetuneError, match="max_lora_rank in the fine-tuning config"):
        check_servable(FinetuneConfig(lora={"r": 8}, max_lora_rank=4), settings)
