"""The schema of a prompt template file (``prompts/*.yaml``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ChatMessage", "PromptFile"]


class ChatMessage(BaseModel):
    """One message of a chat template."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"] = Field(description="Who speaks.")
    content: str = Field(min_length=1, description="Text with {{variables}}.")


class PromptFile(BaseModel):
    """A prompt template as written in git.

    ``template`` is either text or a list of chat messages, with ``{{variable}}``
    placeholders; every placeholder must be listed in ``variables``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", description="Registry name (default: file stem)."
    )
    description: str = Field("", description="What the prompt is for; the version's commit message.")
    tags: dict[str, str] = Field(default_factory=dict, description="Free-form tags.")
    variables: list[str] = Field(description="Every {{variable}} the template uses.")
    template: str | list[ChatMessage] = Field(description="Text, or a list of chat messages.")
    model_parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Default model parameters (temperature, max_tokens, ...).",
    )
