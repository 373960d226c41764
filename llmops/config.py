"""The project file (``llmops.yaml``), its environments, and the embedded defaults.

A project names its environments (``dev``, ``staging``, ``prod`` by default);
each has its own stores. Every store has an embedded default under
``.llmops/<env>/`` that needs no server, and a setting that points at a real
server instead. ``--env`` or ``LLMOPS_ENV`` picks the environment.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmops.errors import ConfigError
from llmops.privacy import RedactionSettings
from llmops.yamlfile import load_yaml_model

# A lakehouse root: a folder (Path) or an object-store URI (str, one of LAKEHOUSE_SCHEMES).
LakehouseRoot = Path | str
LAKEHOUSE_SCHEMES = ("s3://",)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

__all__ = [
    "object_store_uri",
    "PROJECT_FILE",
    "CacheSalt",
    "ChatModelSettings",
    "EnvironmentConfig",
    "IndexConfig",
    "ProjectConfig",
    "RaySettings",
    "Settings",
    "find_project_root",
    "load_settings",
]

PROJECT_FILE = "llmops.yaml"
DEFAULT_ENVS = ("dev", "staging", "prod")
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
# vLLM's prefix-cache salt (``cache_salt``), within vLLM's own bounds: what a chat model may
# send and what the gateway forwards
CacheSalt = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^@/\\\x00]+$")]


class ChatModelSettings(BaseModel):
    """Which chat model a chain calls, and how."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "openai"] = Field(
        "local",
        description="'local': transformers in this process; 'openai': any OpenAI-compatible endpoint.",
    )
    model: str = Field(
        "smollm2",
        description="'smollm2' (SmolLM2-135M-Instruct, offline, built on first use), 'tiny' (a "
                    "random model for plumbing tests), a local path, or a model id.",
    )
    base_url: str | None = Field(None, description="Endpoint URL for kind 'openai'.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Environment variable holding the endpoint's API key."
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature.")
    max_tokens: int = Field(64, ge=1, le=32768, description="Most tokens to generate.")
    timeout_s: float = Field(60.0, gt=0, description="Request timeout for kind 'openai'.")
    adapter: str | None = Field(
        None,
        description="A registered LoRA adapter (NAME@ALIAS or NAME/VERSION, e.g. "
                    "docs-qa-lora@production) on the base model; logging a chain pins its version.",
    )
    cache_salt: CacheSalt | None = Field(
        None, description="For kind 'openai' in front of vLLM: salts the engine's prefix cache "
                    "(vLLM's cache_salt), so a request reuses only prompts cached by requests "
                    "with the same salt. Evaluations set a fresh one per run.",
    )


class ChromaSettings(BaseModel):
    """Where the vector database lives: embedded on disk, or a Chroma server."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(None, description="PersistentClient folder (default .llmops/<env>/chroma).")
    host: str | None = Field(None, description="Chroma server host; set it to use HttpClient.")
    port: int = Field(8000, description="Chroma server port.")


class IndexConfig(BaseModel):
    """Where the documents come from, how they are split and embedded, where they go."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        "docs", description="A folder of Markdown/text files, or a Delta table (id + text columns)."
    )
    collection: str = Field(
        "docs", pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{1,510}[A-Za-z0-9]$|^[A-Za-z0-9]{3}$",
        description="Chroma collection name (3-512 characters).",
    )
    splitter: Literal["markdown", "recursive"] = Field(
        "markdown", description="LangChain text splitter: Markdown-aware or plain recursive."
    )
    chunk_size: int = Field(600, ge=50, le=20000, description="Most characters per chunk.")
    chunk_overlap: int = Field(80, ge=0, description="Characters shared by neighbouring chunks.")
    extensions: list[str] = Field(
        default_factory=lambda: [".md", ".markdown", ".txt", ".rst"],
        description="File extensions read from a folder source.",
    )
    max_document_bytes: int = Field(
        2_000_000, ge=1, description="Documents larger than this are skipped with a reason."
    )
    embedder: str = Field(
        "minilm",
        description="'minilm' (the offline all-MiniLM-L6-v2), a sentence-transformers folder or "
                    "id, or 'hash' (no model: word hashing, for smoke tests and CI).",
    )
    batch_size: int = Field(64, ge=1, le=4096, description="Chunks embedded and written per batch.")
    engine: Literal["local", "ray"] = Field(
        "local", description="Where chunks are embedded: 'local' (this process) or 'ray' (Ray "
                             "actors, each with the embedder loaded once; a cluster when "
                             "envs.<env>.ray.address or RAY_ADDRESS is set).")
    id_column: str = Field("id", description="Delta source: the document id column.")
    text_column: str = Field("text", description="Delta source: the document text column.")
    top_k: int = Field(3, ge=1, le=100, description="Chunks a chain retrieves per question.")
    search: Literal["dense", "hybrid"] = Field(
        "hybrid", description="How chains search: 'hybrid' fuses embedding neighbours with BM25 "
                              "(exact words: commands, flags, names); 'dense' uses embeddings only.")


class RaySettings(BaseModel):
    """Where batch work runs: a local Ray on this machine's cores, or a Ray cluster."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(
        None, description="A running cluster (ray://HOST:10001, HOST:6379 or 'auto'); unset: "
                          "$RAY_ADDRESS, else a local Ray started for the job.")
    num_cpus: int | None = Field(None, ge=1, description="Local Ray: CPUs (default: all).")
    object_store_mb: int = Field(
        512, ge=64, description="Local Ray: object store memory in MiB (small batches suffice).")
    actors: int | None = Field(
        None, ge=1, description="Actors a batch job runs (each with its model loaded once); "
                                "default: half the cluster's CPUs, at most 8.")


class EnvironmentConfig(BaseModel):
    """The stores of one environment; anything unset takes the embedded default."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI (default sqlite:///.llmops/<env>/mlflow.db)."
    )
    registry_uri: str | None = Field(None, description="MLflow registry URI (default: tracking URI).")
    artifact_location: str | None = Field(
        None, description="Where runs store artifacts (default .llmops/<env>/artifacts)."
    )
    lakehouse: str | None = Field(None, description=(
        "Delta tables: a folder (default .llmops/<env>/lakehouse) or an s3://bucket/prefix URI "
        "(credentials from the AWS variables)."))
    chroma: ChromaSettings = Field(default_factory=ChromaSettings)
    redaction: RedactionSettings = Field(
        default_factory=RedactionSettings,
        description="Personal data and secrets redacted before the gateway stores requests, "
                    "answers and feedback (on by default in every environment but dev).")
    chat_model: ChatModelSettings | None = Field(
        None, description="Overrides the project's chat model in this environment."
    )
    ray: RaySettings = Field(default_factory=RaySettings)
    retention_days: int | None = Field(None, ge=1, description=(
        "Keep lakehouse rows this many days: `llmops tables retain` deletes older ones by "
        "default, and feedback datasets never read them (default: keep forever)."))


class ProjectConfig(BaseModel):
    """The whole of ``llmops.yaml``."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field("llmops", description="Project name; also the MLflow experiment name.")
    default_env: str = Field("dev", description="Environment used when none is given.")
    prompts_dir: str = Field("prompts", description="Folder of prompt template YAML files.")
    models_dir: str = Field(".llmops/models", description="Where built offline models go.")
    chat_model: ChatModelSettings = Field(default_factory=ChatModelSettings)
    index: IndexConfig = Field(default_factory=IndexConfig)
    envs: dict[str, EnvironmentConfig] = Field(
        default_factory=lambda: {name: EnvironmentConfig() for name in DEFAULT_ENVS}
    )


class Settings(BaseModel):
    """The project's settings resolved for one environment: every path absolute."""

    model_config = ConfigDict(frozen=True)

    root: Path
    env: str
    project: str
    tracking_uri: str
    registry_uri: str
    artifact_location: str
    lakehouse: LakehouseRoot  # a folder, or an s3:// URI (a str)
    chroma: ChromaSettings
    # `enabled` decided for the environment (llmops.privacy.redactor_for reads it)
    redaction: RedactionSettings = RedactionSettings(enabled=False)
    prompts_dir: Path
    models_dir: Path
    chat_model: ChatModelSettings
    index: IndexConfig
    ray: RaySettings = RaySettings()
    retention_days: int | None = None  # rows older than this many days are not kept or read

    @property
    def state_dir(self) -> Path:
        """``.llmops/<env>`` under the project root."""
        return self.root / ".llmops" / self.env

    @property
    def base_model(self) -> str:
        """The base model the engine serves and adapters train on: the local chat model's
        (``chat_model.model``), else the offline default."""
        if self.chat_model.kind == "local":
            return self.chat_model.model
        return "smollm2"

    @property
    def is_remote_tracking(self) -> bool:
        return self.tracking_uri.startswith(("http://", "https://"))


def find_project_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` that holds ``llmops.yaml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    return None


def _interpolate(value: Any, where: str) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string of the YAML tree."""
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def expand(match: re.Match[str]) -> str:
        name, default = match.group("name"), match.group("default")
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{PROJECT_FILE}: field '{where.lstrip('.')}' uses ${{{name}}}, which is not set: "
            f"export {name} or give a default as ${{{name}:-value}}"
        )

    return _VAR.sub(expand, value)


def load_project(root: Path | None) -> ProjectConfig:
    """Read and validate ``llmops.yaml`` in ``root``; embedded defaults when there is none."""
    if root is None:
        return ProjectConfig()
    return load_yaml_model(root / PROJECT_FILE, ProjectConfig, what="project file",
                           prepare=lambda raw: _interpolate(raw, ""))


def _lakehouse(root: Path, value: str | None, default: Path) -> LakehouseRoot:
    """The root an environment's ``lakehouse:`` names: a folder (resolved against the project)
    or ``s3://bucket[/prefix]``; any other ``scheme://`` is refused."""
    if not value or "://" not in value:
        return _abs(root, value, default)
    return object_store_uri(value, "lakehouse")


def object_store_uri(value: str, setting: str) -> str:
    """``s3://bucket[/prefix]``, normalised; ConfigError naming ``setting`` for another
    scheme or a bad bucket name."""
    if not value.startswith(LAKEHOUSE_SCHEMES):
        raise ConfigError(f"{setting}: '{value}' is not supported: use a folder or an "
                          "s3://bucket/prefix URI")
    bucket, _, prefix = value.split("://", 1)[1].partition("/")
    if not _BUCKET.match(bucket):
        raise ConfigError(f"{setting}: '{bucket}' in '{value}' is not a valid S3 bucket name")
    prefix = prefix.strip("/")
    return f"s3://{bucket}" + (f"/{prefix}" if prefix else "")


def _abs(root: Path, value: str | None, default: Path) -> Path:
    if not value:
        return default
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def load_settings(env: str | None = None, root: Path | str | None = None) -> Settings:
    """Resolve the settings of one environment.

    Args:
        env: environment name; default ``$LLMOPS_ENV``, then the project's ``default_env``.
        root: project root; default the nearest folder with ``llmops.yaml``, else the cwd.
    """
    root_path = Path(root).resolve() if root else find_project_root()
    project = load_project(root_path if root_path and (root_path / PROJECT_FILE).is_file() else None)
    root_path = root_path or Path.cwd().resolve()
    name = env or os.environ.get("LLMOPS_ENV") or project.default_env
    if name not in project.envs:
        known = ", ".join(sorted(project.envs)) or "(none)"
        raise ConfigError(
            f"unknown environment '{name}': {PROJECT_FILE} declares {known}; "
            "pick one with --env or LLMOPS_ENV"
        )
    cfg = project.envs[name]
    state = root_path / ".llmops" / name
    tracking = os.environ.get("LLMOPS_TRACKING_URI") or cfg.tracking_uri
    if not tracking:
        tracking = f"sqlite:///{state / 'mlflow.db'}"
    elif tracking.startswith("sqlite:///") and not tracking.startswith("sqlite:////"):
        tracking = f"sqlite:///{_abs(root_path, tracking[len('sqlite:///'):], state)}"
    registry = os.environ.get("LLMOPS_REGISTRY_URI") or cfg.registry_uri or tracking
    artifacts = cfg.artifact_location
    if artifacts and "://" not in artifacts and not artifacts.startswith("mlflow-artifacts:"):
        artifacts = str(_abs(root_path, artifacts, state / "artifacts"))
    if not artifacts and not tracking.startswith(("http://", "https://")):
        artifacts = str(state / "artifacts")
    chroma = cfg.chroma.model_copy(
        update={"path": str(_abs(root_path, cfg.chroma.path, state / "chroma"))}
    )
    return Settings(
        root=root_path,
        env=name,
        project=project.project,
        tracking_uri=tracking,
        registry_uri=registry,
        artifact_location=artifacts or "",
        lakehouse=_lakehouse(root_path, cfg.lakehouse, state / "lakehouse"),
        chroma=chroma,
        redaction=cfg.redaction.resolved(name),
        prompts_dir=_abs(root_path, project.prompts_dir, root_path / "prompts"),
        models_dir=_abs(root_path, project.models_dir, root_path / ".llmops" / "models"),
        chat_model=cfg.chat_model or project.chat_model,
        index=project.index,
        ray=cfg.ray,
        retention_days=cfg.retention_days,
    )
