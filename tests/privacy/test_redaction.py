"""The redactor: Presidio's pattern recognizers on a blank spaCy pipeline, offline."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmops.privacy import RedactionSettings, Redactor, redactor_for


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    found = Redactor()
    found.warm_up()
    return found


@pytest.mark.parametrize("text, entity", [
    ("write to ada.lovelace@example.com today", "EMAIL_ADDRESS"),
    ("or to j_doe+test@mail.example.co.uk", "EMAIL_ADDRESS"),
    ("call me at (415) 555-2671", "PHONE_NUMBER"),
    ("call +1-415-555-2671 now", "PHONE_NUMBER"),
    ("my number is 415.555.2671", "PHONE_NUMBER"),
    ("in London: +44 20 7946 0958", "PHONE_NUMBER"),
    ("Berlin office +49 30 901820", "PHONE_NUMBER"),
    ("Paris: +33 1 42 68 53 00", "PHONE_NUMBER"),
    ("mobile 07911 123456 please", "PHONE_NUMBER"),
    ("card 4111 1111 1111 1111 expires soon", "CREDIT_CARD"),
    ("card 5500-0000-0000-0004 expires soon", "CREDIT_CARD"),
    ("amex 378282246310005 on file", "CREDIT_CARD"),
    ("Mastercard 2-series 2221 0000 0000 0017 on file", "CREDIT_CARD"),
    ("pay to DE89 3704 0044 0532 0130 00 today", "IBAN_CODE"),
    ("pay to GB82WEST12345698765432 today", "IBAN_CODE"),
    ("pay to FR1420041010050500013M02606 today", "IBAN_CODE"),
    ("key sk-proj-abcDEF1234567890abcdefXYZ in the config", "API_KEY"),
    ("AWS key AKIAIOSFODNN7EXAMPLE leaked", "API_KEY"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789 here", "API_KEY"),
    ("Authorization: Bearer abcdef0123456789abcdef.xyz", "API_KEY"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3 ok",
     "API_KEY"),
    ("set api_key=Zx81kd02mfq93kdlwe0 in .env", "API_KEY"),
    ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc here", "API_KEY"),
])
def test_each_pattern_entity_is_found_and_replaced(redactor: Redactor, text: str,
                                                    entity: str) -> None:
    before = redactor.counts()[entity]
    out = redactor.redact(text)
    assert f"<{entity}>" in out, out
    assert redactor.counts()[entity] == before + 1


@pytest.mark.parametrize("text", [
    "The version is 1.2.3, released 2024-05-01 at 10:30.",
    "Order 123456 costs $1,299.99 and ships in 3-5 days.",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b, id 123e4567-e89b-12d3-a456-426614174000",
    "card 4111 1111 1111 1112 (not a valid card number: the Luhn check fails)",
    "IBAN DE89 3704 0044 0532 0130 01 has a bad checksum",
    "the sk-learn package and AKIA in lower case: akiaiosfodnn7example",
    "write to someone at example dot com; port 8080; pid 12345678",
])
def test_text_without_personal_data_is_left_as_it_is(redactor: Redactor, text: str) -> None:
    assert redactor.redact(text) == text


def test_a_redacted_json_body_stays_valid_json(redactor: Redactor) -> None:
    body = json.dumps({"model": "base", "max_tokens": 8, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "I am bob@example.org, card 4111 1111 1111 1111. \"Quoted\""}]})
    out = redactor.redact_json_text(body)
    doc = json.loads(out)
    assert doc["messages"][1]["content"] == "I am <EMAIL_ADDRESS>, card <CREDIT_CARD>. \"Quoted\""
    assert doc["model"] == "base" and doc["max_tokens"] == 8
    untouched = json.dumps({"messages": [{"role": "user", "content": "What is Delta?"}]})
    assert redactor.redact_json_text(untouched) is untouched  # nothing found: the same text
    cut = body[:80]  # a truncated body is no JSON: redacted as plain text
    assert "bob@example.org" not in redactor.redact_json_text(cut + "bob@example.org")


_PII = st.sampled_from(["bob@example.org", "+1-415-555-2671", "4111 1111 1111 1111",
                        "GB82WEST12345698765432", "AKIAIOSFODNN7EXAMPLE"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30)
    | st.builds(lambda a, p, b: f"{a} {p} {b}", st.text(max_size=15), _PII, st.text(max_size=15)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=_JSON)
def test_any_json_document_stays_json_and_loses_its_canaries(redactor: Redactor,
                                                             document: object) -> None:
    out = json.loads(redactor.redact_json_text(json.dumps(document)))
    text = json.dumps(out)
    for canary in ("bob@example.org", "415-555-2671", "4111 1111 1111 1111",
                   "GB82WEST12345698765432", "AKIAIOSFODNN7EXAMPLE"):
        assert canary not in text


def test_only_the_configured_entities_are_redacted() -> None:
    emails_only = Redactor(RedactionSettings(entities=["EMAIL_ADDRESS"]))
    out = emails_only.redact("mail a@example.com or call +1-415-555-2671")
    assert out == "mail <EMAIL_ADDRESS> or call +1-415-555-2671"
    assert emails_only.counts() == {"EMAIL_ADDRESS": 1}


def test_counts_are_per_entity_and_per_redactor(redactor: Redactor) -> None:
    fresh = Redactor()
    fresh.redact("a@example.com, b@example.com and +1-415-555-2671")
    assert fresh.counts() == {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1, "CREDIT_CARD": 0,
                              "IBAN_CODE": 0, "API_KEY": 0}


def test_nothing_reaches_the_network_and_import_stays_cheap() -> None:
    """Building the analyzer and redacting an e-mail (whose domain tldextract checks) opens no
    socket; importing llmops.privacy loads neither Presidio nor spaCy."""
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise RuntimeError('network: %r' % (a,))\n"
        "socket.socket.connect = refuse; socket.getaddrinfo = refuse\n"
        "import llmops.privacy, llmops.config\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('presidio_analyzer', 'spacy')))\n"
        "r = llmops.privacy.Redactor()\n"
        "print(r.redact('mail ada@example.com, call +1-415-555-2671'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "mail <EMAIL_ADDRESS>, call <PHONE_NUMBER>"], out.stderr
    assert "network" not in out.stderr and "Public Suffix" not in out.stderr
    assert socket  # the test's own process is untouched


def test_redactor_for_follows_the_settings() -> None:
    assert redactor_for(RedactionSettings(enabled=False)) is None
    assert isinstance(redactor_for(RedactionSettings(enabled=True)), Redactor)
