"""``Redactor``: personal data and secrets replaced by ``<ENTITY>`` placeholders, counted.

Presidio finds them (``llmops.privacy.recognizers``: pattern recognizers, validated where
a checksum or a registry allows) and its anonymizer replaces them. The analyzer is built on
first use, once per process; importing ``llmops.privacy`` imports neither Presidio nor spaCy.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from typing import Any, Protocol

from llmops.errors import MissingExtraError
from llmops.privacy.config import RedactionSettings
from llmops.privacy.recognizers import analyzer

__all__ = ["Redactor", "redacted_row", "redactor_for"]

_NEEDS_DIGIT = frozenset({"PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS"})
_DIGIT = re.compile(r"\d")
_SHORTEST = 6  # no entity fits in fewer characters (a@b.co)


class _HasRedaction(Protocol):
    @property
    def redaction(self) -> RedactionSettings: ...


class Redactor:
    """Redacts text with the entities of ``settings``, and counts what it redacted.

    Thread-safe: one analyzer serves every thread of the process, one call at a time.
    """

    def __init__(self, settings: RedactionSettings | None = None) -> None:
        self.settings = settings or RedactionSettings()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter({e: 0 for e in self.settings.entities})
        self._seconds = 0.0
        self._engines: tuple[Any, Any] | None = None

    def _analyzer(self) -> tuple[Any, Any]:
        if self._engines is None:
            try:
                self._engines = analyzer(self.settings.entities, self.settings.phone_regions)
            except ImportError as exc:
                raise MissingExtraError(exc.name or "presidio_analyzer", "privacy") from exc
        return self._engines

    def warm_up(self) -> None:
        """Build the analyzer now (seconds, once per process) rather than on the first text."""
        self.redact("warm up: call +1 415 555 2671 or mail a@example.com")
        with self._lock:
            self._counts = Counter({e: 0 for e in self.settings.entities})
            self._seconds = 0.0

    def _candidates(self, text: str) -> list[str]:
        """The entities ``text`` could hold at all (an e-mail needs an '@', a card a digit)."""
        digit = _DIGIT.search(text) is not None
        return [e for e in self.settings.entities
                if (e != "EMAIL_ADDRESS" or "@" in text) and (e not in _NEEDS_DIGIT or digit)]

    def redact(self, text: str) -> str:
        """``text`` with each entity found replaced by ``<ENTITY>`` (``<EMAIL_ADDRESS>``)."""
        if len(text) < _SHORTEST:
            return text
        entities = self._candidates(text)
        if not entities:
            return text
        analyzer_engine, anonymizer = self._analyzer()
        with self._lock:
            started = time.perf_counter()
            found = analyzer_engine.analyze(text=text, language="en", entities=entities,
                                            score_threshold=self.settings.score_threshold)
            if found:
                result = anonymizer.anonymize(text=text, analyzer_results=found,
                                              merge_entities_with_spaces=False)
                self._counts.update(item.entity_type for item in result.items)
                text = result.text
            self._seconds += time.perf_counter() - started
        return text

    def redact_json_text(self, text: str) -> str:
        """A JSON document with its string values redacted, still valid JSON (the text as it
        came when nothing was found); text that is not JSON is redacted as plain text."""
        try:
            document = json.loads(text)
        except ValueError:
            return self.redact(text)
        changed = [False]

        def walk(value: Any) -> Any:
            if isinstance(value, str):
                out = self.redact(value)
                changed[0] = changed[0] or out != value
                return out
            if isinstance(value, dict):
                return {k: walk(v) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v) for v in value]
            return value

        redacted = walk(document)
        return json.dumps(redacted, ensure_ascii=False) if changed[0] else text

    def counts(self) -> dict[str, int]:
        """Entities redacted so far by this redactor, per type (every configured type listed)."""
        with self._lock:
            return dict(self._counts)

    @property
    def seconds(self) -> float:
        """Time spent finding and replacing entities so far (for benchmarks and metrics)."""
        return self._seconds


def redactor_for(settings: RedactionSettings | _HasRedaction) -> Redactor | None:
    """The redactor an environment's settings ask for (``Settings`` or its ``redaction``);
    None when it stores text as sent. ``enabled`` unset counts as off here: resolve it for
    the environment first (``Settings.redaction`` is)."""
    redaction = settings if isinstance(settings, RedactionSettings) else settings.redaction
    return Redactor(redaction) if redaction.enabled else None


def redacted_row(redactor: Redactor | None, row: dict[str, Any]) -> dict[str, Any]:
    """An ``inference_log`` row as it may be stored: its request body (JSON, kept valid JSON)
    and its answer redacted; the row itself when there is no redactor."""
    if redactor is None:
        return row
    out = dict(row)
    if isinstance(row.get("request"), str):
        out["request"] = redactor.redact_json_text(row["request"])
    if isinstance(row.get("response"), str):
        out["response"] = redactor.redact(row["response"])
    return out
