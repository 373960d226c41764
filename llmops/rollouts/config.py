"""What a rollout is asked to do: the steps, the metric, the guardrails and the test's settings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["GUARDRAILS", "RolloutSpec"]

GUARDRAILS = ("error_rate", "latency_p95")


class RolloutSpec(BaseModel):
    """A rollout's settings, fixed when it starts (stored with each of its rows)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[int] = Field(
        default_factory=lambda: [5, 25, 50, 100],
        description="The candidate's share of traffic at each step, in percent, increasing; "
                    "reaching 100 is the promotion.")
    metric: Literal["thumbs_up"] = Field(
        "thumbs_up", description="The primary metric: the thumbs-up rate of rated answers "
                                 "(scores 4-5 count as up and 1-2 as down where no thumbs "
                                 "were given).")
    guardrails: list[Literal["error_rate", "latency_p95"]] = Field(
        default_factory=lambda: ["error_rate", "latency_p95"],
        description="Request metrics on which the candidate may not be worse than production.")
    error_rate_margin: float = Field(
        0.02, ge=0, le=1, description="How much higher (absolute) the candidate's error rate may "
                                      "be than production's before it is rolled back.")
    latency_p95_ratio: float = Field(
        1.5, ge=1, description="How many times production's p95 latency the candidate's may "
                               "reach before it is rolled back.")
    alpha: float = Field(
        0.05, gt=0, lt=0.5, description="The chance of a wrong promotion or rollback when the "
                                        "arms are equal, however often the test is looked at.")
    min_rated: int = Field(
        50, ge=1, description="Rated answers each arm needs before any decision on the metric.")
    min_rated_per_step: int = Field(
        20, ge=1, description="Rated answers of the candidate at a step before it may advance.")
    min_requests: int = Field(
        50, ge=1, description="Requests each arm needs before a guardrail can roll back.")
    max_rated: int = Field(
        5000, ge=1, description="Rated answers of the candidate after which a rollout without "
                                "a significant difference ends inconclusive (production stays).")
    tuned_for: int = Field(
        500, ge=1, description="Rated answers per arm at which the test's interval is "
                                "tightest (it stays valid at every count).")
    sticky_by: Literal["user", "client"] = Field(
        "user", description="What a user's arm is a hash of: the key's name and the end user "
                            "the request names (the key's name alone where it names none), or "
                            "the key's name alone.")
    max_rated_per_subject: int | None = Field(
        10, ge=1, description="Rated answers one subject (a key, with the end user it names) "
                              "adds to the evidence; its later verdicts are not counted, so no "
                              "one caller decides a rollout (null: no cap).")
    max_rated_per_key: int | None = Field(
        1000, ge=1, description="Rated answers one key (all the end users it names together) "
                                "adds to the evidence; its later verdicts are not counted "
                                "(null: no cap).")
    reveal_arm: bool = Field(
        False, description="Whether a chain call's answer names its rollout arm and the "
                           "versions behind it (false: callers cannot tell the arms apart).")
    approval: Literal["auto", "human"] = Field(
        "auto", description="auto: a rollout whose candidate users like better is promoted by "
                            "the judge; human: it waits at its last step for "
                            "'llmops rollout approve' (status awaiting_approval).")

    @field_validator("steps")
    @classmethod
    def _check_steps(cls, steps: list[int]) -> list[int]:
        if not steps:
            raise ValueError("give at least one step")
        for share in steps:
            if not 0 < share <= 100:
                raise ValueError(f"step {share}: a share of traffic is a percentage above 0 "
                                 "and at most 100")
        if steps[0] == 100:
            raise ValueError("the first step must send the candidate less than 100% of traffic "
                             "(100 means promoted: use 'llmops chains promote' for that)")
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError(f"steps {','.join(map(str, steps))} must increase")
        return steps

    @model_validator(mode="after")
    def _check_sizes(self) -> RolloutSpec:
        if self.max_rated < self.min_rated:
            raise ValueError(f"max_rated ({self.max_rated}) is below min_rated ({self.min_rated})")
        return self

    @property
    def shares(self) -> list[int]:
        """The steps that split traffic (a final 100 is the promotion, not a split)."""
        return [s for s in self.steps if s < 100]
