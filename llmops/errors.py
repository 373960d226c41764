"""The errors llmops raises.

Every error derives from one root, so a caller can catch ``LlmopsError`` and
show its message: each message names the file, field or reference at fault
and says what to do next. The tree::

    LlmopsError
    ├── ConfigError              llmops.yaml or a config field is wrong
    ├── MissingExtraError        an optional dependency is not installed
    ├── StoreUnavailableError    a tracking server (or other store) cannot be reached
    ├── PromptError
    │   ├── PromptFileError      a prompts/*.yaml file is malformed
    │   ├── PromptVariableError  a template uses or is given an unknown variable
    │   └── PromptNotFoundError  a prompt reference does not exist in the registry
    ├── ChainError
    │   ├── ChainFileError       a chain file cannot be loaded or logged
    │   └── ModelNotFoundError   a registered model reference does not exist
    ├── ChatModelError           the chat model cannot be built or called
    ├── IndexingError            the vector-database update job cannot run
    │   └── IndexSourceError     the document source is missing or malformed
    ├── EvaluationError          an evaluation run, the gate or monitoring cannot run
    │   └── EvalDatasetError     an evaluation dataset is missing or malformed
    ├── FinetuneError            a fine-tuning job cannot run
    │   ├── FinetuneDataError    its training data is empty or malformed
    │   └── OutOfMemoryError     the accelerator ran out of memory while training
    ├── RolloutError             a rollout cannot start, be judged or end as asked
    ├── BatchError               a batch job cannot run, or too many of its rows failed
    ├── BadReferenceError        a NAME / NAME@ALIAS / NAME/VERSION string is malformed
    └── NameTakenError           a prompt's name given to a model, or a model's to a prompt

The CLI prints ``error: <message>`` on one line and exits with status 1 for
any of these.
"""

from __future__ import annotations

__all__ = [
    "BatchError",
    "ChainError",
    "ChainFileError",
    "ChatModelError",
    "ConfigError",
    "EvalDatasetError",
    "EvaluationError",
    "FinetuneDataError",
    "FinetuneError",
    "IndexSourceError",
    "IndexingError",
    "LlmopsError",
    "MissingExtraError",
    "ModelNotFoundError",
    "NameTakenError",
    "OutOfMemoryError",
    "PromptError",
    "PromptFileError",
    "PromptNotFoundError",
    "PromptVariableError",
    "BadReferenceError",
    "RolloutError",
    "StoreUnavailableError",
]


class LlmopsError(Exception):
    """Root of every error llmops raises on purpose."""


class ConfigError(LlmopsError):
    """The project file or a setting in it is wrong."""


class MissingExtraError(LlmopsError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, module: str, extra: str, hint: str | None = None) -> None:
        fix = hint or f"run pip install 'llmops[{extra}]'"
        super().__init__(f"'{module}' is not installed: {fix}")
        self.module = module
        self.extra = extra


class StoreUnavailableError(LlmopsError):
    """A store the environment names (tracking server, Chroma server) cannot be reached."""


class PromptError(LlmopsError):
    """Something is wrong with a prompt template or reference."""


class PromptFileError(PromptError):
    """A prompt template file is malformed."""


class PromptVariableError(PromptError):
    """A template uses, or is rendered with, a variable it does not declare."""


class PromptNotFoundError(PromptError):
    """The prompt reference names no registered prompt version."""


class ChainError(LlmopsError):
    """Something is wrong with a chain."""


class ChainFileError(ChainError):
    """A chain file cannot be loaded or logged."""


class ModelNotFoundError(ChainError):
    """The model reference names no registered model version."""


class ChatModelError(LlmopsError):
    """A chat model cannot be built or called."""


class IndexingError(LlmopsError):
    """The vector-database update job cannot run."""


class IndexSourceError(IndexingError):
    """The document source is missing or malformed."""


class EvaluationError(LlmopsError):
    """An evaluation run, the promotion gate or a monitoring run cannot run."""


class EvalDatasetError(EvaluationError):
    """An evaluation dataset is missing, empty or malformed."""


class FinetuneError(LlmopsError):
    """A fine-tuning job cannot run (bad config, base model, or training failure)."""


class FinetuneDataError(FinetuneError):
    """The training data is empty, or lacks the columns its method needs."""


class OutOfMemoryError(FinetuneError):
    """The accelerator ran out of memory while training."""


class RolloutError(LlmopsError):
    """A rollout cannot start, be judged or end as asked (unknown chain, bad steps, one running)."""


class BatchError(LlmopsError):
    """A batch job cannot run (bad input or output, no Ray) or too many of its rows failed."""


class BadReferenceError(LlmopsError, ValueError):
    """A reference string is not NAME, NAME@ALIAS or NAME/VERSION."""


class NameTakenError(LlmopsError):
    """A name is held by the other kind of registered artifact (prompts and models share one
    namespace in MLflow)."""
