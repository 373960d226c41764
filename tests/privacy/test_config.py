"""Redaction settings: per environment, off in dev and on elsewhere unless set."""

from __future__ import annotations

import pytest

from llmops.privacy import RedactionSettings, redactor_for


def test_redaction_is_off_in_dev_and_on_elsewhere_unless_set() -> None:
    assert RedactionSettings().resolved("dev").enabled is False
    assert RedactionSettings().resolved("prod").enabled is True
    assert RedactionSettings().resolved("staging").enabled is True
    assert RedactionSettings(enabled=False).resolved("prod").enabled is False
    assert RedactionSettings(enabled=True).resolved("dev").enabled is True


def test_settings_resolve_redaction_per_environment(project) -> None:
    from llmops.config import load_settings

    (project / "llmops.yaml").write_text(
        "project: p\nenvs:\n  dev: {}\n  prod: {}\n  staging:\n    redaction: {enabled: false}\n"
        "  eu:\n    redaction:\n      entities: [EMAIL_ADDRESS, IBAN_CODE]\n")
    on = {env: load_settings(env, project).redaction.enabled
          for env in ("dev", "prod", "staging", "eu")}
    assert on == {"dev": False, "prod": True, "staging": False, "eu": True}
    redactor = redactor_for(load_settings("eu", project))
    assert redactor is not None and redactor.settings.entities == ["EMAIL_ADDRESS", "IBAN_CODE"]


def test_a_misspelt_setting_is_refused(project) -> None:
    from llmops.config import load_settings
    from llmops.errors import ConfigError

    (project / "llmops.yaml").write_text(
        "project: p\nenvs:\n  prod:\n    redaction: {enable: true}\n")
    with pytest.raises(ConfigError):
        load_settings("prod", project)
