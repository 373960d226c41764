"""Package a chain file as an MLflow pyfunc model (models from code) and register it."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
from pydantic import BaseModel

import llmops
from llmops.chains.building import merge_chat_settings, resolve_prompt, resolve_retriever
from llmops.chains.config import ChainConfig
from llmops.config import Settings, load_settings
from llmops.errors import ChainFileError, LlmopsError, PromptVariableError
from llmops.lineage import content_hash, git_commit, git_is_dirty
from llmops.models.catalog import resolve_model
from llmops.registry import CHAIN_KIND, KIND_TAG, adapter_version, check_name_free, parse_ref, promote

__all__ = ["ChainInput", "ChainModel", "LoggedChain", "log_chain", "read_chain_defaults"]

class ChainInput(BaseModel):
    """One request to a chain: the signature's input row."""

    question: str


class ChainModel(mlflow.pyfunc.PythonModel):
    """A LangChain Runnable served through pyfunc: one answer dict per input row.

    ``predict`` is typed: MLflow then derives the signature from the hints and
    checks a list of dicts in ~50 us instead of building a DataFrame from it
    (~1 ms). A DataFrame still works; MLflow hands it over as one.
    """

    def __init__(self, chain: Any) -> None:
        self.chain = chain

    @staticmethod
    def _rows(model_input: Any) -> list[dict[str, Any]]:
        import pandas as pd

        if isinstance(model_input, pd.DataFrame):
            # Column-wise tolist() is several times faster than to_dict("records") on the
            # one-row frames pyfunc hands over per request.
            columns = [str(c) for c in model_input.columns]
            values = zip(*(model_input[c].tolist() for c in model_input.columns), strict=True)
            return [dict(zip(columns, row, strict=True)) for row in values]
        if isinstance(model_input, (dict, BaseModel)):
            model_input = [model_input]
        elif isinstance(model_input, str):
            return [{"question": model_input}]
        return [row.model_dump() if isinstance(row, BaseModel) else dict(row) for row in model_input]

    def predict(
        self, model_input: list[ChainInput], params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        rows = self._rows(model_input)
        if len(rows) == 1:
            return [self.chain.invoke(rows[0])]
        return self.chain.batch(rows)


@dataclass(frozen=True)
class LoggedChain:
    """What ``log_chain`` produced."""

    name: str
    version: int
    model_uri: str
    run_id: str
    prompt_uri: str
    alias: str | None


def read_chain_defaults(path: Path) -> dict[str, Any]:
    """The literal ``CONFIG = {...}`` of a chain file, read without running the file."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ChainFileError(f"cannot read chain file {path}: {exc}") from exc
    except SyntaxError as exc:
        raise ChainFileError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "CONFIG" for t in node.targets
        ):
            try:
                value = ast.literal_eval(node.value)
            except ValueError as exc:
                raise ChainFileError(f"{path}: CONFIG must be a literal dict") from exc
            if not isinstance(value, dict):
                raise ChainFileError(f"{path}: CONFIG must be a dict")
            return value
    raise ChainFileError(
        f"{path}: no top-level CONFIG = {{...}}: a chain file declares its prompt there"
    )


def _requirements() -> list[str]:
    from importlib.metadata import version

    reqs = []
    for dist in ("mlflow", "langchain-core", "pydantic", "pandas", "pyyaml"):
        reqs.append(f"{dist}=={version(dist)}")
    for dist in ("torch", "transformers", "tokenizers", "langchain-openai", "chromadb",
                 "sentence-transformers"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except Exception:  # noqa: BLE001 - an optional dependency that is not installed
            continue
    return reqs


def _check_same_variables(own: str, other: str, settings: Settings) -> None:
    from llmops.prompts import get_version, to_template

    mine = set(to_template(get_version(own, settings)).variables)
    theirs = set(to_template(get_version(other, settings)).variables)
    if mine != theirs:
        raise PromptVariableError(
            f"prompt {other} takes {', '.join(sorted(theirs)) or '(none)'} but the chain's "
            f"{own} takes {', '.join(sorted(mine)) or '(none)'}: the chain cannot serve it")


def log_chain(
    path: str | Path,
    name: str | None = None,
    alias: str | None = None,
    settings: Settings | None = None,
    prompt: str | None = None,
) -> LoggedChain:
    """Log ``path`` as a pyfunc model from code, register a version and set ``alias``.

    The prompt reference is pinned to the exact version it names now, and the
    chat-model settings of the environment are written into the model config.
    ``prompt`` (a reference) replaces the file's own: a candidate prompt version (an
    optimized one) served by the same chain; it must take the variables the file's does.
    """
    import mlflow

    settings = settings or load_settings()
    file = Path(path).resolve()
    if not file.is_file():
        raise ChainFileError(f"chain file {path} does not exist")
    defaults = read_chain_defaults(file)
    try:
        config = ChainConfig.model_validate(defaults)
    except Exception as exc:  # pydantic ValidationError
        raise ChainFileError(f"{path}: CONFIG is invalid: {exc}") from exc
    model_name = name or file.stem.replace("_", "-")
    parse_ref(f"{model_name}@{alias}" if alias else model_name)  # a bad name or alias fails first
    check_name_free(model_name, "model", settings)
    if prompt is not None:
        _check_same_variables(config.prompt, prompt, settings)
        config = config.model_copy(update={"prompt": prompt})
    prompt = resolve_prompt(config.prompt, settings)
    chat = merge_chat_settings(config.chat_model, settings.chat_model)
    adapter = None
    if chat.adapter:
        # pin the adapter to an exact registered version, as the prompt is pinned
        adapter = adapter_version(chat.adapter, settings)
        chat = chat.model_copy(update={"adapter": f"{adapter.name}/{adapter.version}"})
    model_path = (
        resolve_model(chat.model, settings.models_dir, settings.root / "docs")
        if chat.kind == "local"
        else None
    )
    retriever = resolve_retriever(config, settings)
    resolved = config.model_copy(
        update={"chat_model": chat, "resolved_prompt": prompt, "model_path": model_path,
                "retriever": retriever}
    )
    model_config = resolved.model_dump(mode="json")
    commit = git_commit(settings.root)
    tags = {
        KIND_TAG: CHAIN_KIND,
        "llmops.git_commit": commit,
        "llmops.git_dirty": git_is_dirty(settings.root, file),
        "llmops.chain_file": str(file.relative_to(settings.root))
        if file.is_relative_to(settings.root)
        else str(file),
        "llmops.prompt": f"{prompt.name}/{prompt.version}",
        "llmops.prompt_ref": config.prompt,
        "llmops.chat_model": f"{chat.kind}:{chat.model}",
        "llmops.env": settings.env,
        "llmops.config_hash": content_hash(model_config),
    }
    if adapter is not None:
        tags["llmops.adapter"] = f"{adapter.name}/{adapter.version}"
    if retriever is not None:
        tags["llmops.index_version"] = retriever.index_version or ""
        tags["llmops.index_collection"] = retriever.collection or ""
    with mlflow.start_run(run_name=f"log-{model_name}") as run:
        mlflow.set_tags(tags)
        mlflow.log_params(
            {"llmops.prompt_uri": prompt.uri, "llmops.chat_model_kind": chat.kind,
             "llmops.chat_model": chat.model}
        )
        try:
            info = mlflow.pyfunc.log_model(
                name="chain",
                python_model=str(file),
                model_config=model_config,
                # The signature comes from ChainModel.predict's type hints. No input
                # example: with one, MLflow runs the chain on it twice while logging (to
                # check the type hints, then the serving input), which asks the chat model
                # twice: a paid call to a hosted model, a load of a local one.
                pip_requirements=_requirements(),
                # The llmops code the chain file imports travels with the model, so
                # the model loads wherever its requirements are installed.
                code_paths=[str(Path(llmops.__file__).parent)],
                prompts=[prompt.uri],
                tags=tags,
            )
        except LlmopsError:
            raise
        except Exception as exc:
            raise ChainFileError(
                f"logging {path} failed: {exc.__class__.__name__}: {exc}".splitlines()[0]
            ) from exc
    from mlflow import MlflowClient

    client = MlflowClient()
    version = mlflow.register_model(info.model_uri, model_name, tags=tags)
    if config.description:
        client.update_model_version(model_name, version.version, config.description)
    if alias:
        promote(model_name, alias, int(version.version), settings=settings)
    return LoggedChain(
        name=model_name,
        version=int(version.version),
        model_uri=f"models:/{model_name}/{version.version}",
        run_id=run.info.run_id,
        prompt_uri=prompt.uri,
        alias=alias,
    )


