"""References to registered artifacts: ``NAME``, ``NAME@ALIAS`` or ``NAME/VERSION``.

The same grammar as MLflow's ``models:/`` and ``prompts:/`` URIs, so a reference
a user types at the command line maps one to one onto a registry URI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmops.errors import BadReferenceError

__all__ = ["Ref", "adapter_served_name", "parse_ref"]

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
_ALIAS = r"[A-Za-z0-9_][A-Za-z0-9_\-]*"
_PATTERN = re.compile(rf"^(?P<name>{_NAME})(?:@(?P<alias>{_ALIAS})|/(?P<version>[0-9]+))?$")
_RESERVED_ALIAS = re.compile(r"^(latest|[vV][0-9]+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Ref:
    """A parsed reference; at most one of ``alias`` and ``version`` is set."""

    name: str
    alias: str | None = None
    version: int | None = None

    def uri(self, scheme: str) -> str:
        """The MLflow URI for this reference, e.g. ``prompts:/qa@production``."""
        return f"{scheme}:/{self}"

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        if self.version is not None:
            return f"{self.name}/{self.version}"
        return self.name


def parse_ref(text: str, scheme: str | None = None) -> Ref:
    """Parse ``NAME``, ``NAME@ALIAS`` or ``NAME/VERSION`` (optionally with a ``scheme:/`` prefix)."""
    raw = text.strip()
    if scheme and raw.startswith(f"{scheme}:/"):
        raw = raw[len(scheme) + 2 :]
    match = _PATTERN.match(raw)
    if not match:
        raise BadReferenceError(
            f"'{text}' is not a valid reference: use NAME, NAME@ALIAS or NAME/VERSION"
        )
    version = match.group("version")
    alias = match.group("alias")
    if alias and _RESERVED_ALIAS.match(alias):
        raise BadReferenceError(
            f"'{alias}' cannot be an alias: 'latest' and v<number> are reserved; pick another name"
        )
    return Ref(match.group("name"), match.group("alias"), int(version) if version else None)


def adapter_served_name(name: str, version: int | str) -> str:
    """The model name an engine serves adapter ``name/version`` under (``docs-qa-lora-v3``)."""
    return f"{name}-v{version}"
