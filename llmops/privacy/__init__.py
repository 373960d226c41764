"""Privacy: personal data and secrets redacted before anything is stored (Presidio).

Presidio and spaCy load on a ``Redactor``'s first use, never on import.
"""

from __future__ import annotations

from llmops.privacy.config import ENTITIES, RedactionSettings, redacts_by_default
from llmops.privacy.redaction import Redactor, redacted_row, redactor_for

__all__ = [
    "ENTITIES", "RedactionSettings", "Redactor", "redacted_row", "redactor_for", "redacts_by_default",
]
