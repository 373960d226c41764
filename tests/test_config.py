from __future__ import annotations

from pathlib import Path

import pytest

from llmops.config import load_settings
from llmops.errors import ConfigError


def test_defaults_put_each_env_in_its_own_state_dir(project: Path) -> None:
    dev = load_settings(root=project)
    staging = load_settings("staging", root=project)
    assert dev.env == "dev"
    assert dev.tracking_uri == f"sqlite:///{project / '.llmops/dev/mlflow.db'}"
    assert staging.tracking_uri == f"sqlite:///{project / '.llmops/staging/mlflow.db'}"
    assert dev.lakehouse == project / ".llmops/dev/lakehouse"
    assert dev.chroma.path == str(project / ".llmops/dev/chroma")
    assert dev.artifact_location.startswith(str(project / ".llmops/dev"))


def test_llmops_env_picks_the_environment(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_ENV", "staging")
    assert load_settings(root=project).env == "staging"
    assert load_settings("prod", root=project).env == "prod"


def test_unknown_environment_names_the_known_ones(project: Path) -> None:
    with pytest.raises(ConfigError, match="unknown environment 'qa'.*dev, prod, staging"):
        load_settings("qa", root=project)


def test_interpolation_default_and_override(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings("prod", root=project).tracking_uri.startswith("sqlite:///")
    monkeypatch.setenv("LLMOPS_PROD_TRACKING_URI", "http://127.0.0.1:5999")
    assert load_settings("prod", root=project).tracking_uri == "http://127.0.0.1:5999"


def test_missing_variable_without_default_is_named(project: Path) -> None:
    (project / "llmops.yaml").write_text("envs:\n  dev:\n    tracking_uri: ${NOPE_NOT_SET}\n")
    with pytest.raises(ConfigError, match=r"envs.dev.tracking_uri.*NOPE_NOT_SET"):
        load_settings(root=project)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("envs: [dev\n", r"llmops.yaml: line \d+ is not valid YAML"),
        ("- just a list\n", "top level must be a mapping"),
        ("projekt: x\n", "field 'projekt': Extra inputs are not permitted"),
        ("chat_model:\n  kind: ollama\n", "field 'chat_model.kind'"),
        ("envs:\n  dev:\n    chroma:\n      port: many\n", "field 'envs.dev.chroma.port'"),
    ],
)
def test_broken_project_file_gets_a_clear_error(project: Path, text: str, pattern: str) -> None:
    (project / "llmops.yaml").write_text(text)
    with pytest.raises(ConfigError, match=pattern):
        load_settings(root=project)


def test_no_project_file_uses_embedded_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMOPS_ENV", raising=False)
    settings = load_settings()
    assert settings.project == "llmops"
    assert settings.root == tmp_path.resolve()
    assert settings.chat_model.kind == "local" and settings.chat_model.model == "smollm2"
    assert settings.base_model == "smollm2"


def test_the_applications_base_model_is_smollm2() -> None:
    from tests.conftest import REPO

    app = load_settings(root=REPO)
    assert app.chat_model.model == "smollm2" and app.base_model == "smollm2"
