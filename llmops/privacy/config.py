"""Redaction settings: ``envs.<env>.redaction`` in ``llmops.yaml``.

What the gateway stores (the inference log, feedback, traces, datasets built from them) is
redacted where the environment says so; what the client and the engine see never is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ENTITIES", "Entity", "RedactionSettings", "redacts_by_default"]

Entity = Literal["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "API_KEY",
                 "IP_ADDRESS"]
# found by patterns validated where they can be (Luhn, IBAN checksum, phonenumbers, domain)
ENTITIES: tuple[Entity, ...] = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE",
                                "API_KEY")
# the environments that store text as sent unless their redaction says otherwise
_PLAIN_ENVS = ("dev",)


def redacts_by_default(env: str) -> bool:
    """Whether ``env`` redacts when its ``redaction.enabled`` is unset: every environment but
    ``dev`` does (privacy by default: staging and prod may hold real users' data)."""
    return env not in _PLAIN_ENVS


class RedactionSettings(BaseModel):
    """Personal data and secrets replaced by placeholders (``<EMAIL_ADDRESS>``) before storage.

    ``logging_only``: the client gets the engine's answer unchanged and the engine the prompt
    unchanged; only what is written (write-ahead log, Delta tables, trace content, datasets)
    is redacted.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = Field(
        None, description="Redact what is stored. Unset: on in every environment but 'dev' "
                          "(off there, so that local work stores text as sent).")
    entities: list[Entity] = Field(
        default_factory=lambda: list(ENTITIES),
        description="What is redacted: EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD (Luhn-valid), "
                    "IBAN_CODE (checksum-valid), API_KEY (sk-..., AKIA..., ghp_..., JWTs, "
                    "bearer tokens, private keys, key=value secrets), IP_ADDRESS (off by "
                    "default: version strings look like addresses).")
    score_threshold: float = Field(
        0.3, ge=0.0, le=1.0,
        description="Presidio's lowest score a finding needs (phone numbers score 0.4 without "
                    "a word like 'phone' near them, validated cards, IBANs and e-mails 1.0).")
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR", "IL", "IN", "CA", "BR"],
        description="Countries whose national phone formats are recognized (numbers written "
                    "with +country code are recognized whatever this says); each region "
                    "costs CPU per text.")

    def resolved(self, env: str) -> RedactionSettings:
        """These settings with ``enabled`` decided for ``env``."""
        enabled = redacts_by_default(env) if self.enabled is None else self.enabled
        return self.model_copy(update={"enabled": enabled})
