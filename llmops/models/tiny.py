"""Build the offline tiny model: a small Llama with a tokenizer trained on the project's docs.

No model hub is needed. Two builds from the same corpus and config write
byte-identical files, so the model is reproducible from git alone. It loads in
transformers, PEFT and vLLM.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from llmops.errors import ConfigError, MissingExtraError
from llmops.lineage import content_hash
from llmops.models.config import TinyModelConfig
from llmops.models.folders import write_model_folder

__all__ = ["TINY", "build_tiny_model", "ensure_tiny_model", "tiny_corpus", "tiny_model_id"]

TINY = "tiny"
SPECIAL_TOKENS = ["<|pad|>", "<|begin|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{{ '<|begin|>' }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
_MARKER = "llmops_tiny.json"


def tiny_corpus(docs_dir: Path | None) -> list[str]:
    """The texts the tokenizer is trained on: the project's docs, else the packaged corpus."""
    texts: list[str] = []
    if docs_dir is not None and docs_dir.is_dir():
        for path in sorted(docs_dir.rglob("*")):
            if path.suffix in {".md", ".txt", ".rst"} and path.is_file():
                texts.append(path.read_text(encoding="utf-8", errors="replace"))
    if not texts:
        texts.append(resources.files("llmops.models").joinpath("corpus.md").read_text("utf-8"))
    return texts


def _lines(texts: list[str]) -> Iterator[str]:
    for text in texts:
        yield from (line for line in text.splitlines() if line.strip())


def build_tiny_model(
    out: Path, docs_dir: Path | None = None, config: TinyModelConfig | None = None
) -> Path:
    """Build the model into ``out`` (replacing it atomically) and return ``out``."""
    try:
        import torch
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    except ImportError as exc:
        raise MissingExtraError(exc.name or "transformers", "local") from exc

    cfg = config or TinyModelConfig()
    if cfg.hidden_size % cfg.num_attention_heads:
        raise ConfigError("tiny model: hidden_size must be a multiple of num_attention_heads")
    texts = tiny_corpus(docs_dir)

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_lines(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin|>",
        eos_token="<|end|>",
        pad_token="<|pad|>",
    )
    fast.chat_template = CHAT_TEMPLATE

    llama = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        head_dim=cfg.hidden_size // cfg.num_attention_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = LlamaForCausalLM(llama)
    model.generation_config.do_sample = False
    model.generation_config.pad_token_id = fast.pad_token_id

    marker = {"config": cfg.model_dump(), "corpus_sha256": content_hash(texts)}
    return write_model_folder(Path(out), model, fast, _MARKER, marker)


def tiny_model_id(docs_dir: Path | None = None, config: TinyModelConfig | None = None) -> str:
    """``tiny-<hash>``: the hash of the corpus and config the model would be built from."""
    cfg = config or TinyModelConfig()
    return f"{TINY}-{content_hash([cfg.model_dump(), tiny_corpus(docs_dir)])[:12]}"


def ensure_tiny_model(
    models_dir: Path, docs_dir: Path | None = None, config: TinyModelConfig | None = None
) -> Path:
    """The tiny model for this corpus and config, built on first use.

    The folder is named by content (``tiny-<hash>``), so editing the docs builds a
    new model next to the old one instead of changing what logged chains run.
    """
    out = Path(models_dir) / tiny_model_id(docs_dir, config)
    if not (out / _MARKER).is_file():
        build_tiny_model(out, docs_dir, config)
    return out
