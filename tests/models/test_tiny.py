from __future__ import annotations

import hashlib
from pathlib import Path

from llmops.models import TinyModelConfig, build_tiny_model, ensure_tiny_model

DOCS = Path(__file__).resolve().parents[2] / "docs"


def tiny(models_dir: Path) -> Path:
    return ensure_tiny_model(models_dir, DOCS)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_two_builds_are_byte_identical(tmp_path: Path, models_dir: Path) -> None:
    again = build_tiny_model(tmp_path / "again", DOCS)
    assert digest(again) == digest(tiny(models_dir))
    assert "model.safetensors" in digest(again)


def test_a_different_seed_gives_different_weights(tmp_path: Path, models_dir: Path) -> None:
    other = build_tiny_model(tmp_path / "other", DOCS, TinyModelConfig(seed=1))
    assert digest(other)["model.safetensors"] != digest(tiny(models_dir))["model.safetensors"]
    assert digest(other)["tokenizer.json"] == digest(tiny(models_dir))["tokenizer.json"]


def test_model_folder_is_named_by_content(tmp_path: Path, models_dir: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("llmops syncs prompts and promotes chains.\n" * 20)
    first = ensure_tiny_model(tmp_path / "models", docs)
    assert ensure_tiny_model(tmp_path / "models", docs) == first
    (docs / "a.md").write_text("llmops keeps a vector index in sync.\n" * 20)
    second = ensure_tiny_model(tmp_path / "models", docs)
    assert second != first and first.is_dir() and second.is_dir()


def test_loads_and_generates_in_transformers(models_dir: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = tiny(models_dir)
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "llama"
    assert config.hidden_size // config.num_attention_heads == 64  # vLLM's CPU attention needs >= 64
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "How do I promote a chain?"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )
    assert tok.decode(enc["input_ids"][0]).endswith("<|assistant|>\n")
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == enc["input_ids"].shape[1] + 5


def test_loads_in_peft(models_dir: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny(models_dir))
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in peft_model.parameters()) // 10
    ids = torch.tensor([[1, 5, 9, 12]])
    loss = peft_model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert torch.isfinite(loss)
