"""Shared fixtures: every test runs in its own project folder with its own stores.

The offline models and the embedded docs are built once per session and shared (read-only);
everything else (MLflow sqlite stores, artifacts) lives in a temp project. With
``LLMOPS_TEST_CACHE`` set to a folder (``make test`` sets a fresh one per run), those are built
there once, under a lock, and shared by the pytest-xdist workers and the demo's session too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops.processes import free_port, start_process, stop_process_tree, wait_for_http

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


# The test files that take longest (measured with --durations on 2 cores), longest first.
# Collected first, so that pytest-xdist (--dist loadfile hands out files in collection order
# as workers free up) starts them early and the run does not end on one worker finishing a
# long file while the other idles.
LONGEST_FIRST = (
    "tests/serving/test_vllm_batch.py",
    "tests/serving/test_rollouts.py",
    "tests/indexing/test_ray_engine.py",
    "tests/batch/test_chain_batch.py",
    "tests/evals/test_fast_path.py",
    "tests/serving/test_gateway.py",
    "tests/batch/test_job.py",
    "tests/cli/test_cli.py",
    "tests/serving/test_engine_isolation.py",
    "tests/serving/test_widget.py",
    "tests/serving/test_limits.py",
    "tests/test_notebooks.py",
    "tests/serving/test_wal.py",
    "tests/models/test_smollm2.py",
    "tests/serving/test_schema_fuzz.py",
    "tests/indexing/test_crash.py",
    "tests/serving/test_adapters.py",
    "tests/finetune/test_job.py",
)


# The demo's test keeps both cores busy on its own (beside other tests it ran 1.5 to 2 times
# slower): a plain pytest runs it last; make test runs it apart, after the xdist run.
RUN_LAST = ("tests/test_demo.py",)


def _longest_first(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    rank.update({path: len(LONGEST_FIRST) + 1 + i for i, path in enumerate(RUN_LAST)})

    def key(item: pytest.Item) -> int:
        return rank.get(item.nodeid.split("::", 1)[0], len(LONGEST_FIRST))

    items.sort(key=key)  # stable: the other files, and each file's tests, keep their order


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _longest_first(items)
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (runs on the accelerator machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def shared_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """``name`` under ``$LLMOPS_TEST_CACHE`` when it is set (shared between sessions), else a
    fresh folder of this session."""
    cache = os.environ.get("LLMOPS_TEST_CACHE")
    if not cache:
        return tmp_path_factory.mktemp(name)
    folder = Path(cache) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def building(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock while building in it: another session waits, then finds it built."""
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the tiny model, built once per session (or cache)."""
    from llmops.models import ensure_tiny_model

    folder = shared_folder(tmp_path_factory, "models")
    with building(folder):
        ensure_tiny_model(folder, REPO / "docs")
    return folder


@pytest.fixture(scope="session")
def smollm2_dir(models_dir: Path) -> Path:
    """SmolLM2-135M-Instruct converted once per session (or cache) into the models folder.

    Only tests about the model's quality use it; plumbing tests use ``tiny``.
    """
    from llmops.models import ensure_smollm2

    with building(models_dir):
        return ensure_smollm2(models_dir)


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store, created and migrated once per session.

    Creating one takes MLflow about a second of migrations; ``project`` copies this one
    (30 ms) into each project's ``dev`` environment instead.
    """
    folder = tmp_path_factory.mktemp("mlflow-template")
    db = folder / "mlflow.db"
    subprocess.run([sys.executable, "-c", "from mlflow import MlflowClient; "
                    f"MlflowClient(tracking_uri='sqlite:///{db}').search_experiments()"],
                   cwd=folder, check=True, capture_output=True, timeout=300)
    assert not list(folder.glob("mlflow.db-*")), "the template's journal was not merged"
    return db


def copy_mlflow_db(template: Path, target: Path, cwd: Path) -> None:
    """``template`` as the store at ``target``, as if MLflow had created it in ``cwd``: its
    ``Default`` experiment keeps artifacts in ``cwd/mlruns/0``, as a new store's does."""
    import sqlite3

    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)
    with contextlib.closing(sqlite3.connect(target)) as db, db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                   (str(cwd / "mlruns" / "0"),))


PROJECT_YAML = """\
project: test-project
models_dir: {models_dir}
chat_model:
  kind: local
  model: tiny
  max_tokens: 8
envs:
  dev: {{}}
  staging: {{}}
  prod:
    tracking_uri: ${{LLMOPS_PROD_TRACKING_URI:-}}
"""


@pytest.fixture
def project(tmp_path: Path, models_dir: Path, mlflow_db_template: Path,
            monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project (prompts, chains, llmops.yaml) as the cwd, with isolated stores (its
    ``dev`` MLflow store empty, copied from ``mlflow_db_template``)."""
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copytree(REPO / "prompts", root / "prompts")
    shutil.copytree(REPO / "chains", root / "chains")
    (root / ".gitignore").write_text(".llmops/\n")
    (root / "llmops.yaml").write_text(PROJECT_YAML.format(models_dir=models_dir))
    monkeypatch.chdir(root)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=root, check=True)
    shutil.copytree(REPO / "docs", root / "docs")
    copy_mlflow_db(mlflow_db_template, root / ".llmops" / "dev" / "mlflow.db", root)
    for var in ("LLMOPS_ENV", "LLMOPS_TRACKING_URI", "LLMOPS_REGISTRY_URI", "MLFLOW_TRACKING_URI",
                "LLMOPS_PROD_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    yield root
    import mlflow

    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture(scope="session")
def docs_index(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    """The repository's docs embedded into a Chroma folder once per session.

    Built by ``llmops index update`` in another process, so every file is on disk when it
    is copied. ``docs_indexed`` copies it into a test's project: the test's own
    ``update_index`` then finds each chunk unchanged and embeds nothing (about 20 s saved).
    """
    root = shared_folder(tmp_path_factory, "docs-index")
    chroma = root / ".llmops" / "dev" / "chroma"
    with building(root):
        if (root / "built").is_file():
            return chroma
        shutil.rmtree(root)  # what a killed session left half built
        root.mkdir()
        shutil.copytree(REPO / "docs", root / "docs")
        (root / "llmops.yaml").write_text(PROJECT_YAML.format(models_dir=models_dir))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LLMOPS_", "MLFLOW_TRACKING", "MLFLOW_EXPERIMENT"))}
        subprocess.run([str(Path(sys.executable).parent / "llmops"), "index", "update"],
                       cwd=root, env=env, check=True, capture_output=True, timeout=600)
        (root / "built").touch()
    return chroma


def copy_docs_index(docs_index: Path, project: Path, env: str = "dev") -> Path:
    """Put the embedded docs (``docs_index``) where ``env`` of ``project`` keeps Chroma."""
    target = project / ".llmops" / env / "chroma"
    shutil.copytree(docs_index, target)
    return target


@pytest.fixture
def docs_indexed(project: Path, docs_index: Path) -> Path:
    """The project's ``docs`` collection, already embedded (see ``docs_index``)."""
    return copy_docs_index(docs_index, project)


@pytest.fixture
def production_chain(settings, docs_indexed):
    """docs-qa/1 registered @production, its prompt qa/1 @production, the docs indexed."""
    from llmops.chains import log_chain
    from llmops.indexing import update_index
    from llmops.prompts import set_alias, sync_prompts

    sync_prompts(settings)
    set_alias("qa", "production", 1, settings)
    update_index(settings, progress=False, record=False)
    return log_chain(settings.root / "chains" / "docs_qa.py", alias="production",
                     settings=settings)


@pytest.fixture
def settings(project: Path):
    from llmops.config import load_settings

    return load_settings(root=project)


class ServerProcess:
    """A server started for the test session, ready once ``health_url`` answers 200."""

    def __init__(self, name: str, cmd: list[str], folder: Path, health_url: str,
                 timeout: float, env: dict[str, str] | None = None) -> None:
        log = folder / "server.log"
        self.proc = start_process(cmd, log, env=None if env is None else {**os.environ, **env})
        try:
            wait_for_http(health_url, timeout=timeout, proc=self.proc, log_path=log,
                          interval=0.3, what=name, error=RuntimeError)
        except RuntimeError:
            stop_process_tree(self.proc)
            raise

    def stop(self) -> None:
        stop_process_tree(self.proc, grace_s=20)


def _postgres_bin() -> Path:
    """The newest PostgreSQL of Debian's packages (``make test`` installs it where missing)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (make test "
                           "does it)")
    return found[-1].parent


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A real PostgreSQL server (Debian's packages: initdb, pg_ctl) on a free loopback port for
    the session, with an empty database ``mlflow``; returns its SQLAlchemy URI.

    PostgreSQL refuses to run as root: as root (CI), its commands run as the ``postgres`` user.
    """
    import tempfile

    pg = _postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="llmops-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam("postgres")
        os.chmod(folder, 0o755)
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()

    def run(*cmd: str) -> None:
        done = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")

    run(str(pg / "initdb"), "-D", str(folder / "data"), "-U", "llmops", "--auth=trust",
        "--encoding=UTF8", "--no-sync")
    run(str(pg / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "server.log"), "-w",
        "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        run(str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "llmops", "mlflow")
        yield f"postgresql://llmops@127.0.0.1:{port}/mlflow"
    finally:
        run(str(pg / "pg_ctl"), "-D", str(folder / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, postgres: str,
                  artifacts_s3: S3Server) -> Iterator[str]:
    """A real ``mlflow server`` on loopback, started once per session, deployed as in
    production: its store on PostgreSQL, its artifacts on the S3 server (it proxies them, so
    clients need no S3 credentials)."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    bucket = artifacts_s3.bucket("mlflow-artifacts")
    server = ServerProcess("mlflow server", [
        sys.executable, "-m", "mlflow", "server",
        # the driver named: SQLAlchemy's default for postgresql:// is psycopg 3 now
        "--backend-store-uri", postgres.replace("postgresql://", "postgresql+psycopg2://", 1),
        "--artifacts-destination", f"s3://{bucket}/artifacts",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ], folder, url + "/health", 180,
        env={**artifacts_s3.env, "MLFLOW_S3_ENDPOINT_URL": artifacts_s3.url})
    yield url
    server.stop()


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real Chroma server (``chroma run``) on loopback, started once per session."""
    folder = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    exe = Path(sys.executable).parent / "chroma"
    server = ServerProcess("chroma", [
        str(exe), "run", "--path", str(folder / "data"), "--host", "127.0.0.1", "--port", str(port),
    ], folder, f"http://127.0.0.1:{port}/api/v2/heartbeat", 60)
    yield "127.0.0.1", port
    server.stop()


# Commands that always run as a real ``llmops`` process: they serve, start Ray or run the
# whole loop, so they need a process of their own to start, stop and be killed.
SUBPROCESS_NOUNS = {"serve", "batch", "demo"}


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 300, subprocess_: bool | None = None,
            ) -> subprocess.CompletedProcess[str]:
    """Run the ``llmops`` command line and return its exit code, stdout and stderr.

    Most commands run in this process through Click's ``CliRunner`` (the same ``cli`` object
    the console script calls), which saves a Python start-up and MLflow's import per call;
    those in :data:`SUBPROCESS_NOUNS`, or any with ``subprocess_=True``, run as the real
    console script in a fresh process. ``timeout`` applies to the latter; in process, the
    test's own timeout applies.
    """
    if subprocess_ is None:
        noun = args[2:3] if args[:1] == ("--env",) else args[:1]
        subprocess_ = bool(set(noun) & SUBPROCESS_NOUNS)
    if subprocess_:
        return _run_cli_process(args, env, cwd, timeout)
    return _run_cli_in_process(args, env, cwd)


def _run_cli_process(args: tuple[str, ...], env: dict[str, str] | None, cwd: Path | None,
                     timeout: float) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    for var in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):  # set by mlflow in this process
        if var not in (env or {}):
            full_env.pop(var, None)
    exe = Path(sys.executable).parent / "llmops"
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=full_env,
        cwd=cwd, timeout=timeout,
    )


def _run_cli_in_process(args: tuple[str, ...], env: dict[str, str] | None,
                        cwd: Path | None) -> subprocess.CompletedProcess[str]:
    import traceback

    import mlflow
    from click.testing import CliRunner

    from llmops.cli.main import cli

    overrides: dict[str, str | None] = {"MLFLOW_EXPERIMENT_ID": None,
                                        "MLFLOW_EXPERIMENT_NAME": None}
    overrides.update(env or {})
    previous = Path.cwd()
    while mlflow.active_run():
        mlflow.end_run()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(cli, list(args), env=overrides, prog_name="llmops",
                                    catch_exceptions=True)
    finally:
        os.chdir(previous)
        while mlflow.active_run():
            mlflow.end_run()
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # what the console script would have printed: the traceback, exit code 1
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["llmops", *args], result.exit_code, result.stdout, stderr)


class S3Server:
    """A real S3 API server (moto's server mode, from PyPI) on a free port, for this session.

    ``signed``: it checks signatures; its first three requests (unauthenticated) make an IAM
    user and its access key, and every request after them must be signed with that key.
    ``env`` holds the AWS variables a client needs; ``bucket(name)`` creates a bucket.
    """

    def __init__(self, url: str, proc: subprocess.Popen[bytes], signed: bool) -> None:
        import boto3

        self.url, self.proc = url, proc
        key = {"AccessKeyId": "llmops-test", "SecretAccessKey": "llmops-test-secret"}
        if signed:
            iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                               aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
            iam.create_user(UserName="llmops")
            iam.put_user_policy(UserName="llmops", PolicyName="all", PolicyDocument=json.dumps(
                {"Version": "2012-10-17",
                 "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
            key = iam.create_access_key(UserName="llmops")["AccessKey"]
        self.env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                    "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"], "AWS_REGION": "us-east-1"}

    def bucket(self, name: str) -> str:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                          aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])
        s3.create_bucket(Bucket=name)
        return name


def _s3_server(tmp_path_factory: pytest.TempPathFactory, signed: bool) -> Iterator[S3Server]:
    port = free_port()
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    env = {**os.environ, **({"INITIAL_NO_AUTH_ACTION_COUNT": "3"} if signed else {})}
    proc = start_process([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1",
                          "-p", str(port)], log, with_parent=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/moto-api/", timeout=60, proc=proc, log_path=log,
                      what="the S3 server (moto) to start")
        yield S3Server(url, proc, signed)
    finally:
        stop_process_tree(proc)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The S3 server of the lakehouse tests, checking signatures."""
    yield from _s3_server(tmp_path_factory, signed=True)


@pytest.fixture(scope="session")
def artifacts_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The S3 server behind the MLflow server's artifacts. It does not check signatures:
    MLflow's clients download through presigned URLs, which moto's signature check cannot
    verify (it answers them 500)."""
    yield from _s3_server(tmp_path_factory, signed=False)


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
           ) -> str:
    """The S3 server's AWS variables set for this test, and a fresh bucket; returns the
    lakehouse URI ``s3://<bucket>/lake``."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    bucket = s3_server.bucket(f"t-{name}-{os.getpid()}-{free_port()}"[:63].rstrip("-"))
    return f"s3://{bucket}/lake"
