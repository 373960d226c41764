from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from llmops.chains import invoke, load, log_chain, model_version, promote
from llmops.errors import ChainFileError, ModelNotFoundError, PromptNotFoundError
from llmops.indexing import current_index_version, update_index
from llmops.prompts import get_version, set_alias, sync_prompts
from llmops.stores import connect
from tests.conftest import run_cli


@pytest.fixture
def synced(settings, docs_indexed):
    sync_prompts(settings)
    set_alias("qa", "production", 1, settings)
    update_index(settings, progress=False, record=False)
    return settings


def test_log_registers_a_version_with_pinned_prompt_and_lineage(synced, project: Path) -> None:
    logged = log_chain(project / "chains" / "docs_qa.py", alias="staging", settings=synced)
    assert (logged.name, logged.version, logged.prompt_uri) == ("docs-qa", 1, "prompts:/qa/1")
    client = MlflowClient()
    version = client.get_model_version_by_alias("docs-qa", "staging")
    assert int(version.version) == 1
    assert version.description.startswith("Answers questions about llmops from its documentation")
    assert version.tags["llmops.prompt"] == "qa/1"
    assert version.tags["llmops.prompt_ref"] == "qa@production"
    assert len(version.tags["llmops.git_commit"]) == 40
    assert version.tags["llmops.chat_model"] == "local:tiny"
    assert version.tags["llmops.index_version"] == current_index_version(synced, "docs")[0]
    assert version.tags["llmops.index_collection"] == "docs"

    info = mlflow.models.get_model_info(logged.model_uri)
    assert info.signature is not None
    # the signature comes from ChainModel.predict's hints: a list of {question: string}
    assert "question" in str(info.signature.inputs) and "string" in str(info.signature.inputs)
    # logged without running the chain: no input example to run it on
    assert info.saved_input_example_info is None
    config = info.model_config if hasattr(info, "model_config") else None
    local = mlflow.artifacts.download_artifacts(logged.model_uri)
    mlmodel = (Path(local) / "MLmodel").read_text()
    assert "prompts:/qa/1" in mlmodel or (config and config["resolved_prompt"]["version"] == 1)
    reqs = (Path(local) / "requirements.txt").read_text()
    assert "mlflow==" in reqs and "langchain-core==" in reqs
    # models from code: the chain file itself is the artifact, nothing pickled
    assert (Path(local) / "docs_qa.py").is_file()
    assert not list(Path(local).rglob("*.pkl"))


def test_logged_chain_keeps_its_prompt_version_after_the_alias_moves(synced, project: Path) -> None:
    log_chain(project / "chains" / "docs_qa.py", alias="staging", settings=synced)
    qa = project / "prompts" / "qa.yaml"
    qa.write_text(qa.read_text().replace("Question:", "Q:"))
    sync_prompts(synced)
    set_alias("qa", "production", 2, synced)
    answer = invoke("docs-qa@staging", "What is an alias?", synced)
    assert answer["prompt"] == "qa/1"
    # greedy decoding (the tiny local model at temperature 0): a non-empty answer, the same again
    assert answer["answer"].strip()
    assert invoke("docs-qa@staging", "What is an alias?", synced)["answer"] == answer["answer"]
    second = log_chain(project / "chains" / "docs_qa.py", settings=synced)
    assert second.prompt_uri == "prompts:/qa/2"
    assert invoke(f"docs-qa/{second.version}", "What is an alias?", synced)["prompt"] == "qa/2"


def test_fresh_process_loads_on_dataframe_and_list_of_dicts(synced, project: Path) -> None:
    log_chain(project / "chains" / "docs_qa.py", alias="staging", settings=synced)
    code = (
        "import json, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({synced.tracking_uri!r})\n"
        "m = mlflow.pyfunc.load_model('models:/docs-qa@staging')\n"
        "a = m.predict(pd.DataFrame({'question': ['What is a chain?', 'What is a prompt?']}))\n"
        "b = m.predict([{'question': 'What is a chain?'}])\n"
        "print(json.dumps({'a': a, 'b': b}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=project, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result["a"]) == 2 and len(result["b"]) == 1
    assert all(r["prompt"] == "qa/1" for r in result["a"] + result["b"])
    # greedy decoding on the same model: the same question gets the same answer
    assert result["a"][0]["answer"] == result["b"][0]["answer"]


def test_promote_records_who_when_and_from_where(synced, project: Path, monkeypatch) -> None:
    chain = project / "chains" / "docs_qa.py"
    log_chain(chain, settings=synced)
    log_chain(chain, settings=synced)
    monkeypatch.setenv("LLMOPS_USER", "ada")
    assert promote("docs-qa", "production", 1, settings=synced) == 1
    assert promote("docs-qa", "production", 2, settings=synced) == 2
    tags = MlflowClient().get_model_version("docs-qa", "2").tags
    assert tags["llmops.promoted.production.by"] == "ada"
    assert tags["llmops.promoted.production.from_version"] == "1"
    assert tags["llmops.promoted.production.at"].startswith("20")
    first = MlflowClient().get_model_version("docs-qa", "1").tags
    assert first["llmops.promoted.production.from_version"] == "none"
    assert int(model_version("docs-qa@production", synced).version) == 2
    assert load("docs-qa@production", synced).metadata.run_id


def test_unknown_model_references(synced) -> None:
    for ref in ("nope", "nope@staging", "docs-qa/3"):
        with pytest.raises(ModelNotFoundError, match="does not exist|has no versions"):
            load(ref, synced)


def test_bad_chain_files_register_nothing(synced, project: Path) -> None:
    bad = project / "chains" / "bad.py"
    bad.write_text("x = 1\n")
    with pytest.raises(ChainFileError, match="no top-level CONFIG"):
        log_chain(bad, settings=synced)
    bad.write_text("CONFIG = {'prompt': 'qa@production', 'colour': 1}\n")
    with pytest.raises(ChainFileError, match="CONFIG is invalid"):
        log_chain(bad, settings=synced)
    bad.write_text("def broken(:\n")
    with pytest.raises(ChainFileError, match="syntax error"):
        log_chain(bad, settings=synced)
    with pytest.raises(ChainFileError, match="does not exist"):
        log_chain(project / "chains" / "missing.py", settings=synced)
    text = (project / "chains" / "docs_qa.py").read_text().replace("qa@production", "nope@production")
    (project / "chains" / "nope.py").write_text(text)
    with pytest.raises(PromptNotFoundError, match="nope@production"):
        log_chain(project / "chains" / "nope.py", settings=synced)
    connect(synced)
    assert MlflowClient().search_registered_models() == []


def test_rag_answers_carry_sources_and_the_index_version(synced, project: Path) -> None:
    log_chain(project / "chains" / "docs_qa.py", alias="staging", settings=synced)
    version, _ = current_index_version(synced, "docs")
    answer = invoke("docs-qa@staging", "How do I promote a chain to production?", synced)
    docs = {p.name for p in (project / "docs").glob("*.md")}
    assert answer["sources"] and set(answer["sources"]) <= docs
    assert answer["index_version"] == version


def test_logging_a_rag_chain_without_an_index_registers_nothing(settings, project: Path) -> None:
    from llmops.errors import IndexingError

    sync_prompts(settings)
    set_alias("qa", "production", 1, settings)
    with pytest.raises(IndexingError, match="run 'llmops index update' first"):
        log_chain(project / "chains" / "docs_qa.py", alias="staging", settings=settings)
    assert MlflowClient().search_registered_models() == []


def test_logging_a_chain_under_a_prompts_name_fails_with_one_line(synced, project: Path) -> None:
    # MLflow keeps prompts and models in one namespace: "qa" is taken by the prompt
    out = run_cli("chains", "log", "chains/docs_qa.py", "--name", "qa", cwd=project)
    assert out.returncode == 1, out.stdout + out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in out.stderr and len(errors) == 1, out.stderr
    assert "'qa' is already a prompt's name" in errors[0], out.stderr
    connect(synced)
    assert MlflowClient().search_registered_models() == []
    assert get_version("qa/1", synced).template  # the prompt is untouched
