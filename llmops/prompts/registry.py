"""Prompt versions in MLflow's prompt registry: sync from git, look up, alias, diff."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.config import Settings, load_settings
from llmops.errors import PromptError, PromptNotFoundError
from llmops.lineage import git_commit, git_is_dirty
from llmops.prompts.templates import PromptTemplate, find_variables, read_prompt_dir, template_text
from llmops.registry import Ref, check_name_free, parse_ref
from llmops.stores import connect

if TYPE_CHECKING:
    from mlflow.entities.model_registry import PromptVersion

__all__ = [
    "PromptInfo",
    "SyncReport",
    "diff_versions",
    "get_version",
    "list_prompts",
    "register_version",
    "set_alias",
    "sync_prompts",
    "to_template",
]

TAG_HASH = "llmops.content_hash"
TAG_FILE = "llmops.source_file"
TAG_COMMIT = "llmops.git_commit"
TAG_DIRTY = "llmops.git_dirty"
TAG_OPTIMIZER = "llmops.optimizer"  # a version an optimization run registered (not from git)


@dataclass
class SyncReport:
    """What a sync did: ``(name, version)`` pairs registered now and left as they were."""

    registered: list[tuple[str, int]] = field(default_factory=list)
    unchanged: list[tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True)
class PromptInfo:
    """One row of ``llmops prompts list``."""

    name: str
    latest_version: int
    aliases: dict[str, int]
    description: str


def _client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def _versions(name: str) -> list[PromptVersion]:
    """All versions of a prompt, newest first; empty when the prompt does not exist."""
    client = _client()
    if client.get_prompt(name) is None:
        return []
    versions: list[PromptVersion] = []
    token = None
    while True:
        page = client.search_prompt_versions(name, max_results=100, page_token=token)
        versions.extend(page)
        token = getattr(page, "token", None)
        if not token:
            break
    return sorted(versions, key=lambda v: int(v.version), reverse=True)


def to_template(version: PromptVersion) -> PromptTemplate:
    """A registered version as a :class:`PromptTemplate` (to render or diff)."""
    template = version.template
    return PromptTemplate(
        name=version.name,
        template=template,
        variables=tuple(sorted(find_variables(template))),
        description=version.commit_message or "",
        tags=dict(version.tags or {}),
        model_parameters=dict(version.model_config or {}),
        source=f"prompts:/{version.name}/{version.version}",
    )


def sync_prompts(settings: Settings | None = None, folder: Path | None = None) -> SyncReport:
    """Register a new version of every template whose content changed since its latest version.

    Every file is read and validated, and every name checked against the models
    registered, before anything is registered, so one broken file registers nothing.
    Each version is tagged with its file, its content hash and the git commit. A second
    run with no change is a no-op.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    settings = settings or load_settings()
    folder = folder or settings.prompts_dir
    templates = read_prompt_dir(folder)
    connect(settings)
    for tpl in templates:  # MLflow gives prompts and models one namespace
        check_name_free(tpl.name, "prompt", settings)
    commit = git_commit(settings.root)
    report = SyncReport()
    for tpl in templates:
        # what git last registered: an optimized version in between is not the file's content
        versions = [v for v in _versions(tpl.name) if TAG_OPTIMIZER not in (v.tags or {})]
        latest = versions[0] if versions else None
        if latest is not None and (latest.tags or {}).get(TAG_HASH) == tpl.content_hash:
            report.unchanged.append((tpl.name, int(latest.version)))
            continue
        source = Path(tpl.source or "").resolve()
        try:
            rel = str(source.relative_to(settings.root))
        except ValueError:
            rel = str(source)
        tags = {
            **tpl.tags,
            TAG_FILE: rel,
            TAG_HASH: tpl.content_hash,
            TAG_COMMIT: commit,
            TAG_DIRTY: git_is_dirty(settings.root, source),
        }
        try:
            version = mlflow.genai.register_prompt(
                name=tpl.name,
                template=tpl.template,
                commit_message=tpl.description or None,
                tags=tags,
                model_config=tpl.model_parameters or None,
            )
        except MlflowException as exc:
            raise PromptError(
                f"{rel}: registering prompt '{tpl.name}' failed: {exc.message.splitlines()[0]}"
            ) from exc
        report.registered.append((tpl.name, int(version.version)))
    return report


def register_version(template: PromptTemplate, tags: dict[str, str], message: str,
                     settings: Settings | None = None) -> int:
    """Register ``template`` as a new version of its prompt (no alias moves); its number."""
    import mlflow
    from mlflow.exceptions import MlflowException

    connect(settings or load_settings())
    try:
        version = mlflow.genai.register_prompt(
            name=template.name, template=template.template, commit_message=message,
            tags={**tags, TAG_HASH: template.content_hash},
            model_config=template.model_parameters or None)
    except MlflowException as exc:
        raise PromptError(f"registering a version of prompt '{template.name}' failed: "
                          f"{exc.message.splitlines()[0]}") from exc
    return int(version.version)


def get_version(ref: str | Ref, settings: Settings | None = None) -> PromptVersion:
    """The registered version a reference names (``qa``: the latest; ``qa@alias``; ``qa/3``)."""
    from mlflow.exceptions import MlflowException

    parsed = parse_ref(ref, "prompts") if isinstance(ref, str) else ref
    connect(settings or load_settings())
    client = _client()
    try:
        if parsed.alias:
            return client.get_prompt_version_by_alias(parsed.name, parsed.alias)
        if parsed.version is not None:
            return client.get_prompt_version(parsed.name, parsed.version)
    except MlflowException as exc:
        raise PromptNotFoundError(
            f"prompt '{parsed}' does not exist: see 'llmops prompts list' and "
            f"'llmops prompts show {parsed.name}'"
        ) from exc
    versions = _versions(parsed.name)
    if not versions:
        raise PromptNotFoundError(
            f"prompt '{parsed.name}' does not exist: run 'llmops prompts sync' or check the name"
        )
    return client.get_prompt_version(parsed.name, versions[0].version)


def list_prompts(settings: Settings | None = None) -> list[PromptInfo]:
    """Every registered prompt with its latest version and aliases."""
    import mlflow

    connect(settings or load_settings())
    client = _client()
    infos = []
    for prompt in mlflow.genai.search_prompts():
        versions = _versions(prompt.name)
        aliases: dict[str, int] = {}
        for v in versions:
            for alias in client.get_prompt_version(prompt.name, v.version).aliases or []:
                aliases[alias] = int(v.version)
        infos.append(
            PromptInfo(
                name=prompt.name,
                latest_version=int(versions[0].version) if versions else 0,
                aliases=aliases,
                description=prompt.description or "",
            )
        )
    return sorted(infos, key=lambda i: i.name)


def set_alias(name: str, alias: str, version: int, settings: Settings | None = None) -> None:
    """Point ``name@alias`` at ``version`` (which must exist)."""
    import mlflow

    parse_ref(f"{name}@{alias}")
    get_version(Ref(name, version=version), settings)
    mlflow.genai.set_prompt_alias(name, alias, version)


def diff_versions(name: str, v1: int, v2: int, settings: Settings | None = None) -> str:
    """A unified diff between two versions of a prompt (template, then model parameters)."""
    a = to_template(get_version(Ref(name, version=v1), settings))
    b = to_template(get_version(Ref(name, version=v2), settings))

    def lines(t: PromptTemplate) -> list[str]:
        params = "".join(f"{k}: {t.model_parameters[k]}\n" for k in sorted(t.model_parameters))
        body = template_text(t.template)
        return (body + ("[model parameters]\n" + params if params else "")).splitlines(True)

    return "".join(
        difflib.unified_diff(lines(a), lines(b), f"{name}/{v1}", f"{name}/{v2}")
    )
