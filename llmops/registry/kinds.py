"""What a registered name is: the ``llmops.kind`` tag, and one namespace for prompts and models.

MLflow keeps prompts and models in one namespace (a prompt is a registered model with
a marker tag), so a chain logged under a prompt's name would turn that prompt into a
model with a chain version. ``check_name_free`` refuses that before anything is written.
"""

from __future__ import annotations

from typing import Literal

from llmops.config import Settings, load_settings
from llmops.errors import NameTakenError
from llmops.stores import connect

__all__ = ["ADAPTER_KIND", "CHAIN_KIND", "KIND_TAG", "check_name_free"]

KIND_TAG = "llmops.kind"
"""The tag every registered version and run carries to say what it is."""
CHAIN_KIND = "chain"
ADAPTER_KIND = "adapter"

_PROMPT_MARKER = "mlflow.prompt.is_prompt"  # MLflow's tag on a registered model that is a prompt


def check_name_free(name: str, kind: Literal["prompt", "model"],
                    settings: Settings | None = None) -> None:
    """Refuse to register a ``kind`` under ``name`` when the other kind already holds it."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    connect(settings or load_settings())
    client = MlflowClient()
    if kind == "model":
        try:
            taken = client.get_prompt(name) is not None
        except MlflowException:  # a model of that name, or none
            taken = False
        if taken:
            raise NameTakenError(
                f"'{name}' is already a prompt's name, and MLflow keeps prompts and models in one "
                "namespace: register the model under another name (llmops chains log FILE --name NAME)"
            )
        return
    try:
        found = client.get_registered_model(name)  # prompts are not listed as models
    except MlflowException:
        return
    if str((found.tags or {}).get(_PROMPT_MARKER, "")).lower() != "true":
        raise NameTakenError(
            f"'{name}' is already a registered model's name, and MLflow keeps prompts and models "
            "in one namespace: rename the prompt (its 'name' field)"
        )
