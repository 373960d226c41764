"""Settings of a prompt optimization run (``llmops prompts optimize``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["OptimizeConfig"]


class OptimizeConfig(BaseModel):
    """What to search, on what data, with which model."""

    model_config = ConfigDict(extra="forbid")

    optimizer: Literal["fewshot", "gepa"] = Field(
        "fewshot", description="'fewshot': demonstrations chosen from corrected and well-rated "
                               "answers, by search on the held-out score (works with a 135M "
                               "model); 'gepa': reflective evolution of the instructions (GEPA), "
                               "which needs a reflection model able to rewrite a prompt.")
    budget: int = Field(8, ge=1, le=200, description="Candidate prompts scored on the held-out "
                                                     "set (GEPA: its metric calls are this many "
                                                     "held-out passes).")
    heldout_fraction: float = Field(0.34, gt=0, lt=1, description="Share of the feedback "
                                                                  "examples held out to score "
                                                                  "candidates.")
    min_train: int = Field(2, ge=1, description="Fewest examples to search with.")
    min_heldout: int = Field(3, ge=1, description="Fewest held-out examples to score on.")
    max_demos: int = Field(24, ge=1, le=64, description="Most feedback examples a few-shot "
                                                         "version carries (corrections first).")
    heldout: str | None = Field(None, description="A JSON-lines file of held-out examples "
                                                  "(question, expected) to score on, instead "
                                                  "of a share of the feedback.")
    min_gain: float = Field(0.0, ge=0, description="A candidate is registered only when it beats "
                                                  "the base prompt's held-out token F1 by more.")
    seed: int = Field(0, description="Seed of the search (the split is by question, stable).")
    endpoint: str | None = Field(None, description="OpenAI-compatible endpoint (…/v1) the "
                                                   "candidates are asked through; default the "
                                                   "environment's chat model.")
    model: str | None = Field(None, description="Model name at the endpoint (default 'base').")
    reflection_endpoint: str | None = Field(
        None, description="GEPA's reflection model: an OpenAI-compatible endpoint (…/v1); "
                          "default the endpoint above, else the environment's chat model.")
    reflection_model: str | None = Field(None, description="Model name at the reflection "
                                                           "endpoint.")
    concurrency: int = Field(4, ge=1, le=64, description="Questions asked at once of an "
                                                         "endpoint (a local model: one).")
