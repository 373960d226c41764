"""``llmops serve``: start the engine, then the gateway in front of it, and stop both cleanly."""

from __future__ import annotations

import gc
import os
import re
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmops.config import Settings, load_settings
from llmops.errors import ConfigError
from llmops.privacy import redactor_for
from llmops.serving.adapters import AdapterRegistry, LoadedAdapter
from llmops.serving.auth import check_exposure, load_keys
from llmops.serving.chains import ChainServer
from llmops.serving.config import EndpointConfig, EngineConfig, load_endpoint_config
from llmops.serving.engine import Engine, resolve_engine_model
from llmops.serving.gateway import Gateway
from llmops.serving.http_protocol import with_header_deadline
from llmops.serving.pool import EnginePool
from llmops.serving.request_index import RequestIndex
from llmops.serving.rollouts import RolloutRouter
from llmops.serving.wal import WriteAheadLog

__all__ = ["build_gateway", "serve"]


def default_instance(state_dir: Path, port: int, host: str | None = None) -> str:
    """A gateway's instance id when ``gateway.instance`` is unset: ``gw-<host>-<port>``.

    The id names the gateway's write-ahead log and its commits in the tables (how a replayed
    segment is known to have landed), so two gateways sharing a lakehouse must never have the
    same one: the host name makes it unique across hosts (a pod's name on Kubernetes), the
    port on one host. A log made under the old default (``gw-<port>``) keeps its name, so that
    its commits are still recognised.
    """
    legacy = f"gw-{port}"
    if (state_dir / "wal" / legacy).is_dir():
        return legacy
    name = re.sub(r"[^a-z0-9-]+", "-", (host or socket.gethostname()).lower()).strip("-")
    return f"gw-{name[:48] or 'host'}-{port}"


def gateway_wal(settings: Settings, config: EndpointConfig) -> WriteAheadLog:
    """The gateway's write-ahead log (``gateway.instance``, else :func:`default_instance`)."""
    instance = config.gateway.instance or default_instance(settings.state_dir,
                                                           config.gateway.port)
    return WriteAheadLog(settings.state_dir / "wal" / instance, settings.lakehouse,
                         ["inference_log", "feedback"], instance,
                         flush_interval_s=config.gateway.log_flush_interval_s,
                         batch_size=config.gateway.log_batch_size,
                         fsync=config.gateway.log_fsync)


def build_gateway(settings: Settings, config: EndpointConfig, engine_url: str | list[str],
                  adapters: AdapterRegistry | None = None, engine_key: str | None = None,
                  engine_alive: Callable[[], bool] | None = None,
                  wal: WriteAheadLog | None = None) -> Gateway:
    """A gateway for an engine at ``engine_url`` (its write-ahead log replayed and running).

    ``engine_key`` is the engine's key (sent upstream as ``Authorization: Bearer``);
    ``engine_alive`` tells whether the engine process still runs (``/readyz`` is 503 when not);
    ``wal`` a log already locked (:func:`gateway_wal`), else the gateway's own.
    """
    from llmops.stores import connect
    from llmops.telemetry import configure_tracing
    from llmops.telemetry.genai import set_content_redactor

    keys = load_keys(config.auth, settings.root)  # fails before anything starts
    wal = wal or gateway_wal(settings, config)
    wal.start()
    experiment_id = connect(settings)
    configure_tracing("llmops-gateway", settings.tracking_uri, experiment_id,
                      {"deployment.environment.name": settings.env})
    urls = [engine_url] if isinstance(engine_url, str) else engine_url
    roots = [u.rstrip("/").removesuffix("/v1") for u in urls]
    chains = ChainServer(settings, roots[0] + "/v1", config.engine.served_model_name,
                         api_key_env=config.engine.api_key_env)
    if adapters is None and config.engine.enable_lora:
        adapters = AdapterRegistry(settings, _engine_model(settings, config),
                                   config.engine.max_lora_rank)
    rollouts = RolloutRouter(settings, config.gateway.rollout_refresh_s,
                             config.gateway.rollout_evaluate_s)
    redactor = redactor_for(settings)
    # content on spans (with content capture on) is redacted as stored content is
    set_content_redactor(redactor.redact if redactor is not None else None)
    if redactor is not None:
        redactor.warm_up()  # Presidio loads in seconds: before the first request, not during it
    gateway = Gateway(config, settings.env, roots if len(roots) > 1 else roots[0], keys, wal,
                      RequestIndex(settings.lakehouse), chains, adapters, engine_key=engine_key,
                      engine_alive=engine_alive, rollouts=rollouts, redactor=redactor)
    pool = gateway.state.upstream
    if isinstance(pool, EnginePool):  # a chain's calls go to the engine its caller's key picks
        chains.pick = lambda affinity: pool.choose(affinity).url + "/v1"
    return gateway


def _override_engine(config: EndpointConfig, overrides: dict[str, Any],
                     settings: Settings) -> EngineConfig:
    from pydantic import ValidationError

    try:
        engine = EngineConfig.model_validate({**config.engine.model_dump(), **overrides})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"engine option '{'.'.join(map(str, first['loc']))}': "
                          f"{first['msg']}") from exc
    model = engine.model or ""
    looks_like_path = model.startswith((".", "/", "~")) or Path(model).is_absolute()
    if looks_like_path:
        folder = (settings.root / Path(model).expanduser()).resolve()
        if not (folder / "config.json").is_file():
            raise ConfigError(f"--model {model}: no model folder there (expected {folder}/config.json)")
        engine = engine.model_copy(update={"model": str(folder)})
    return engine


def _engine_model(settings: Settings, config: EndpointConfig) -> str | None:
    """The engine's model folder (offline models resolved), to check adapters' base models against."""
    return resolve_engine_model(config.engine, settings.models_dir, settings.root / "docs",
                                settings.base_model)


def _load_at_runtime(engine_url: str, adapters: dict[str, LoadedAdapter],
                     echo: Callable[[str], None], engine_key: str | None = None) -> None:
    """Load adapters into an engine started elsewhere (vLLM's runtime LoRA API)."""
    import json
    import urllib.error
    import urllib.request

    base = engine_url.rstrip("/").removesuffix("/v1")
    for served, adapter in adapters.items():
        body = json.dumps({"lora_name": served, "lora_path": str(adapter.path)}).encode()
        headers = {"content-type": "application/json"}
        if engine_key:
            headers["authorization"] = f"Bearer {engine_key}"
        req = urllib.request.Request(base + "/v1/load_lora_adapter", data=body, headers=headers)
        try:
            urllib.request.urlopen(req, timeout=300).close()
            echo(f"loaded adapter {served}")
        except (urllib.error.URLError, OSError) as exc:
            echo(f"warning: could not load adapter {served} into {base}: {exc}; "
                 "load it later with POST /admin/adapters/load")


def _settle_garbage_collector() -> None:
    """Keep the garbage collector off what start-up loaded: its objects (MLflow, pandas,
    pyarrow, ...) move to the permanent generation, so collections no longer walk them.
    Sampled (``py-spy``) under 128 streams from a stub engine, the collector held 16% of the
    gateway's busy CPU, and 10% once frozen. The youngest generation is then collected
    every 10,000 allocations instead of 700: a relayed chunk allocates a few short-lived
    objects, and timed by ``gc.callbacks`` the collections still took 3% of the serving
    thread's CPU; with the higher threshold, almost none."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])


def serve(settings: Settings | None = None, host: str | None = None, port: int | None = None,
          echo: Callable[[str], None] = print, endpoint_file: Path | None = None,
          engine_port: int | None = None, engine_overrides: dict[str, Any] | None = None,
          engine_urls: list[str] | None = None) -> None:
    """Run the engine and the gateway until SIGINT/SIGTERM.

    ``engine_overrides`` replace fields of the ``engine`` section (``model``,
    ``gpu_memory_utilization``, ``attention_backend``, ...) for this run; ``engine_urls``
    replace ``engine.url``: the gateway starts no engine and serves over those.
    """
    import uvicorn

    settings = settings or load_settings()
    config = load_endpoint_config(settings, endpoint_file)
    if engine_urls:
        engine_overrides = {**(engine_overrides or {}), "url": list(engine_urls)}
    if engine_overrides:
        config.engine = _override_engine(config, engine_overrides, settings)
    if host:
        config.gateway.host = host
    if port:
        config.gateway.port = port
    if engine_port:
        config.engine.port = engine_port
    # refuse to start staging/prod without keys, or any env on a non-loopback address
    check_exposure(config.gateway.host, load_keys(config.auth, settings.root))
    registry = AdapterRegistry(settings, _engine_model(settings, config),
                               config.engine.max_lora_rank, config.engine.enable_lora)
    startup = (registry.at_startup(config.engine.adapters, config.engine.adapter_alias)
               if config.engine.adapters and config.engine.enable_lora else {})
    for served, adapter in startup.items():
        echo(f"adapter {adapter.name}@{config.engine.adapter_alias} = version {adapter.version} "
             f"(served as {served})")
    # this gateway's log is its own before anything starts (WalInUseError: another gateway's)
    wal = gateway_wal(settings, config)
    wal.lock()
    engine: Engine | None = None
    engine_alive: Callable[[], bool] | None = None
    engine_url: str | list[str]
    if config.engine.urls:
        # Engines managed elsewhere: the gateway starts at once, /readyz tells when one is up.
        engine_url = config.engine.urls
        engine_key = os.environ.get(config.engine.api_key_env)
        for url in engine_url:
            echo(f"using the engine at {url}")
            _load_at_runtime(url, startup, echo, engine_key)
    else:
        model = resolve_engine_model(config.engine, settings.models_dir, settings.root / "docs",
                                     settings.base_model)
        engine = Engine(config.engine, model, settings.state_dir / "logs" / "engine.log",
                        lora_modules={served: str(a.path) for served, a in startup.items()},
                        state_dir=settings.state_dir)
        echo(f"starting the engine ({model}) ...")
        engine.start()
        engine_url, engine_key, engine_alive = engine.url, engine.api_key, engine.alive
        if engine_key:
            # chains served here call the engine too; they read its key from this variable
            os.environ[config.engine.api_key_env] = engine_key
        echo(f"engine ready at {engine_url}")
    try:
        gateway = build_gateway(settings, config, engine_url, registry, engine_key=engine_key,
                                engine_alive=engine_alive, wal=wal)
    except BaseException:
        if engine is not None:
            engine.stop()
        raise
    gw = config.gateway
    server = uvicorn.Server(uvicorn.Config(
        gateway.app, host=gw.host, port=gw.port, log_level="warning", access_log=False,
        lifespan="on", timeout_keep_alive=gw.keepalive_s,
        limit_concurrency=gw.limit_concurrency, timeout_graceful_shutdown=gw.shutdown_timeout_s,
        http=with_header_deadline(gw.header_timeout_s),
        # the client's address is the socket's unless a configured proxy says otherwise
        proxy_headers=gw.trust_proxy_headers, forwarded_allow_ips=gw.forwarded_allow_ips))
    echo(f"gateway on http://{config.gateway.host}:{config.gateway.port} (env {settings.env})")

    def stop(*_: Any) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    _settle_garbage_collector()
    try:
        server.run()
    finally:
        gateway.wal.close()
        if engine is not None:
            engine.stop()
        echo("stopped")
