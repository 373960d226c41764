"""The Presidio analyzer llmops redacts with: pattern recognizers only, built offline.

Presidio's pattern recognizers need tokens from an NLP engine (for the context words that
raise a finding's score, "phone" before a number), not a trained model: the engine here is a
blank spaCy English pipeline (its tokenizer, lower-cased words as lemmas), so nothing is
downloaded (``en_core_web_lg`` is not on PyPI) and nothing reaches the network: e-mail
domains are checked against tldextract's bundled public suffix list, never a fetched one.

The secrets recognizer (``API_KEY``) matches keys by their vendors' published shapes
(``sk-...``, ``AKIA...``, ``ghp_...``, ``xox?-...``, ``AIza...``, Stripe's ``sk_live_...``),
JWTs, the token after ``Bearer``, PEM private keys, and a long value after ``api_key=``,
``secret:``, ``token=``, ``password:``. Bare long hex or base64 runs are left alone: they are
far more often hashes, commit ids and request ids than keys.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["KEY_PATTERNS", "analyzer"]

# (name, regex for the `regex` module, score); case-sensitive unless the pattern says (?i)
KEY_PATTERNS: tuple[tuple[str, str, float], ...] = (
    ("openai", r"\bsk-(?:proj-|svcacct-|admin-)?(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{20,}", 0.9),
    ("aws_access_key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0.9),
    ("github", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b", 0.9),
    ("slack", r"\bxox[abprs]-[A-Za-z0-9-]{10,}", 0.9),
    ("google", r"\bAIza[0-9A-Za-z_-]{35}\b", 0.9),
    ("stripe", r"\b[rsp]k_(?:live|test)_[0-9A-Za-z]{16,}\b", 0.9),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", 0.9),
    ("bearer", r"(?<=\b(?i:bearer)\s+)[A-Za-z0-9._~+/-]{20,}=*", 0.8),
    ("private_key", r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----.*?-----END (?:[A-Z]+ )?PRIVATE KEY-----",
     0.9),
    ("assigned_secret",
     r"(?<=\b(?i:api[_-]?key|secret(?:[_-]?key)?|access[_-]?key|client[_-]?secret|token|"
     r"password|passwd)[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9_\-+/=.]{16,}", 0.7),
)

_LOCK = threading.Lock()
_BUILT: dict[tuple[Any, ...], Any] = {}


def _blank_nlp_engine() -> Any:
    import spacy
    from presidio_analyzer.nlp_engine import NlpArtifacts
    from presidio_analyzer.nlp_engine.slim_spacy_nlp_engine import SlimSpacyNlpEngine

    class BlankSpacyNlpEngine(SlimSpacyNlpEngine):
        """spaCy's blank English pipeline: a tokenizer, no model, no download."""

        def __init__(self) -> None:
            super().__init__(models=[{"lang_code": "en", "model_name": "blank:en"}],
                             auto_download=False)

        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

        def _doc_to_nlp_artifact(self, doc: Any, language: str) -> NlpArtifacts:
            # a blank pipeline has no lemmatizer: the lower-cased word stands in, so that
            # context words ("phone", "card") still raise a finding's score
            return NlpArtifacts(entities=[], tokens=doc, tokens_indices=[t.idx for t in doc],
                                lemmas=[t.lemma_ or t.lower_ for t in doc], nlp_engine=self,
                                language=language, scores=[])

    engine = BlankSpacyNlpEngine()
    engine.load()
    return engine


def _offline_email_recognizer() -> Any:
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    # the bundled snapshot of the public suffix list: no fetch, no cache written
    suffixes = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return suffixes(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()


def _card_recognizer() -> Any:
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer

    # Presidio's pattern predates Mastercard's 2-series (2221-2720, issued since 2017)
    two_series = Pattern("Mastercard 2-series", r"\b2[2-7]\d{2}[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b",
                         0.3)
    return CreditCardRecognizer(patterns=[*CreditCardRecognizer.PATTERNS, two_series])


def _key_recognizer() -> Any:
    import regex
    from presidio_analyzer import Pattern, PatternRecognizer

    return PatternRecognizer(
        supported_entity="API_KEY", name="ApiKeyRecognizer",
        patterns=[Pattern(name, pattern, score) for name, pattern, score in KEY_PATTERNS],
        context=["key", "token", "secret", "password", "bearer"],
        global_regex_flags=regex.DOTALL | regex.MULTILINE)


def _build(entities: Sequence[str], phone_regions: Sequence[str]) -> tuple[Any, Any]:
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.predefined_recognizers import (
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
    )
    from presidio_anonymizer import AnonymizerEngine

    makers = {"EMAIL_ADDRESS": _offline_email_recognizer,
              "PHONE_NUMBER": lambda: PhoneRecognizer(supported_regions=tuple(phone_regions)),
              "CREDIT_CARD": _card_recognizer, "IBAN_CODE": IbanRecognizer,
              "API_KEY": _key_recognizer, "IP_ADDRESS": IpRecognizer}
    registry = RecognizerRegistry(supported_languages=["en"])
    for entity in entities:
        registry.add_recognizer(makers[entity]())
    analyzer_engine = AnalyzerEngine(registry=registry, nlp_engine=_blank_nlp_engine(),
                                     supported_languages=["en"])
    return analyzer_engine, AnonymizerEngine()


def analyzer(entities: Sequence[str], phone_regions: Sequence[str]) -> tuple[Any, Any]:
    """Presidio's ``(AnalyzerEngine, AnonymizerEngine)`` for ``entities``, built once per
    process (importing and building Presidio takes seconds)."""
    key = (tuple(sorted(entities)), tuple(phone_regions))
    with _LOCK:
        if key not in _BUILT:
            _BUILT[key] = _build(key[0], key[1])
        return _BUILT[key]
