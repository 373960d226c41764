"""Read a YAML settings file into a validated pydantic model, with one-line errors.

Every settings file llmops reads (``llmops.yaml``, ``serving/endpoint.yaml``,
``evals/gate.yaml``, ``finetune/lora.yaml``, ``prompts/*.yaml``, keys files) goes
through here, so each gives the same errors: a file that cannot be read, YAML that
does not parse (with its line), a top level that is not a mapping, a field that does
not validate (with its dotted path). Messages name the file and the field, never the
value found there: a settings file may hold a secret.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from llmops.errors import ConfigError, LlmopsError

__all__ = ["load_yaml_model", "read_yaml_mapping", "validate_model", "validation_message"]

M = TypeVar("M", bound=BaseModel)


def read_yaml_mapping(path: Path | str, *, what: str, error: type[LlmopsError] = ConfigError,
                      missing_ok: bool = False) -> dict[str, Any]:
    """The top-level mapping of a YAML file (``{}`` for an empty file).

    Args:
        path: the file.
        what: what the file is, in the user's words ("fine-tuning config").
        error: the error class to raise (a subclass of ``LlmopsError``).
        missing_ok: give ``{}`` for a missing file instead of raising.
    """
    path = Path(path)
    if missing_ok and not path.exists():
        return {}
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f": line {mark.line + 1}" if mark else ""
        raise error(f"{path}{where} is not valid YAML: fix its syntax") from exc
    except UnicodeDecodeError as exc:
        raise error(f"cannot read {what} {path}: it is not UTF-8 text") from exc
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc.__class__.__name__}") from exc
    except (ValueError, RecursionError) as exc:  # a scalar YAML parses but cannot build (2020-02-30)
        raise error(f"{path} is not valid YAML: a value cannot be read "
                    f"({exc.__class__.__name__}): fix the value") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping of the {what}'s fields "
                    f"(the top level must be a mapping, not {type(raw).__name__})")
    return raw


def validation_message(exc: ValidationError) -> str:
    """``field 'a.b': <what is wrong>`` for the first error of ``exc``."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "(top level)"
    return f"field '{field}': {err['msg']}"


def validate_model(raw: Any, model_cls: type[M], *, where: str,
                   error: type[LlmopsError] = ConfigError) -> M:
    """``model_cls`` validated from ``raw``; an invalid field raises ``error`` naming ``where``."""
    try:
        return model_cls.model_validate(raw)
    except ValidationError as exc:
        raise error(f"{where}: {validation_message(exc)}") from exc


def load_yaml_model(path: Path | str, model_cls: type[M], *, what: str,
                    error: type[LlmopsError] = ConfigError, missing_ok: bool = False,
                    prepare: Callable[[dict[str, Any]], Any] | None = None) -> M:
    """Read ``path`` and validate it as ``model_cls``; errors name the file and the field.

    Args:
        path: the YAML file.
        model_cls: the pydantic model its top-level mapping validates as.
        what: what the file is, in the user's words ("gate config").
        error: the error class to raise (a subclass of ``LlmopsError``).
        missing_ok: validate ``{}`` (the model's defaults) when the file is missing.
        prepare: turns the mapping read into what is validated (interpolation, overrides).
    """
    raw: Any = read_yaml_mapping(path, what=what, error=error, missing_ok=missing_ok)
    if prepare is not None:
        raw = prepare(raw)
    return validate_model(raw, model_cls, where=str(path), error=error)
