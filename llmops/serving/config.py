"""Serving settings (``serving/endpoint.yaml``): the engine, the gateway, and API keys.

The file holds defaults and per-environment overrides under ``envs:``; an
override is merged section by section over the defaults.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmops.config import Settings
from llmops.errors import ConfigError
from llmops.yamlfile import load_yaml_model

__all__ = ["AuthConfig", "EndpointConfig", "EngineConfig", "GatewayConfig", "load_endpoint_config"]

ENDPOINT_FILE = Path("serving") / "endpoint.yaml"
_ORIGIN = re.compile(r"^https?://[^/\s?#]+$")
_ENGINE_URL = re.compile(r"^https?://[^/\s?#]+(/[^\s?#]*)?$")


class EngineConfig(BaseModel):
    """vLLM's OpenAI-compatible server (or another one: ``command``), started as a subprocess."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        None, description="'smollm2', 'tiny', a local model folder, or a model id; default: the "
                          "project's base model (chat_model.model in llmops.yaml).")
    served_model_name: str = Field("base", description="The name clients put in 'model'.")
    url: str | list[str] | None = Field(
        None, description="Use the engine already running here (or the engines: a list, a pool "
                          "the gateway spreads requests over, health-checked, with session and "
                          "prefix affinity); start none.")
    command: list[str] | None = Field(
        None, description="Start this OpenAI-compatible server instead of vLLM: its argument "
                          "list, where {host}, {port}, {model} and {served_model_name} are filled "
                          "in (it must listen on {port}). It runs under the same watchdog and gets "
                          "the engine's key as VLLM_API_KEY, which it must demand on /v1/models; "
                          "the vLLM settings below are not passed to it.")
    api_key_env: str = Field(
        "LLMOPS_ENGINE_API_KEY",
        description="Environment variable holding the key (vLLM's VLLM_API_KEY) of an engine "
                    "started elsewhere (engine.url); an engine llmops starts gets a new key at "
                    "each start.")
    env_passthrough: list[str] = Field(
        default_factory=list,
        description="More environment variables the engine may see (a name, or a prefix ending "
                    "in '*'); the engine otherwise gets only what vLLM, torch, CUDA and Hugging "
                    "Face read, never the gateway's secrets.")
    host: str = Field("127.0.0.1", description="Engine bind address.")
    port: int = Field(8100, description="Engine port.")
    max_model_len: int | None = Field(2048, description="Longest sequence.")
    dtype: str = Field("auto", description="Weights dtype (auto, bfloat16, float16, float32).")
    tensor_parallel_size: int | None = Field(None, ge=1, description="GPUs per replica.")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="GPU memory share.")
    max_num_seqs: int | None = Field(None, ge=1, description="Most sequences per batch.")
    attention_backend: str | None = Field(None, description="vLLM --attention-backend.")
    api_server_count: int | None = Field(None, ge=1, description="vLLM --api-server-count.")
    enable_lora: bool = Field(True, description="Start with LoRA enabled.")
    max_lora_rank: int = Field(16, ge=1, description="Highest LoRA rank the engine accepts.")
    max_loras: int = Field(4, ge=1, description="Adapters held at once.")
    adapters: list[str] = Field(
        default_factory=list,
        description="Registered adapters (model names) whose adapter_alias version is loaded at "
                    "start-up; a name with no such version yet is skipped.")
    adapter_alias: str = Field("production", description="The alias start-up loads.")
    cpu_kvcache_space_gib: int = Field(1, ge=1, description="KV cache on CPU builds (GiB).")
    otlp_traces_endpoint: str | None = Field(
        None, description="vLLM exports its request spans here (--otlp-traces-endpoint), as "
                          "children of the gateway's (it reads their traceparent); an "
                          "http(s)://.../v1/traces URL is sent as OTLP/HTTP protobuf, anything "
                          "else by gRPC. Unset: the engine exports no spans.")
    extra_args: list[str] = Field(default_factory=list, description="More vLLM arguments.")
    start_timeout_s: float = Field(600, gt=0, description="How long the engine may take to start.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | list[str] | None) -> str | list[str] | None:
        urls = [value] if isinstance(value, str) else value or []
        if isinstance(value, list) and not value:
            raise ValueError("engine.url: give at least one engine URL, or leave it unset")
        for url in urls:
            if not _ENGINE_URL.match(url):
                raise ValueError(f"engine.url: {url!r} is not an engine's http(s) URL "
                                 "(e.g. http://vllm-0.vllm:8000/v1)")
        return value

    @property
    def urls(self) -> list[str]:
        """The engines started elsewhere (``url``), none when llmops starts its own."""
        return [self.url] if isinstance(self.url, str) else list(self.url or [])

    @field_validator("command")
    @classmethod
    def _check_command(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not any("{port}" in arg for arg in value):
            raise ValueError("the engine command must listen where the gateway looks: put "
                             "{port} in it (e.g. [my-server, --port, '{port}'])")
        return value


class GatewayConfig(BaseModel):
    """The gateway in front of the engine."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Gateway bind address.")
    port: int = Field(8000, description="Gateway port.")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Larger request bodies get 413.")
    max_tokens_cap: int = Field(1024, ge=1, description="Higher max_tokens gets 400.")
    default_max_tokens: int = Field(
        256, ge=1, description="max_tokens added to a request that sets none (at most the cap).")
    max_n: int = Field(4, ge=1, description="Highest 'n' (and 'best_of') a request may ask.")
    max_logprobs: int = Field(5, ge=0, description="Highest 'top_logprobs' / 'logprobs'.")
    max_prompts: int = Field(16, ge=1, description="Most prompts in one completions request.")
    max_prompt_chars: int = Field(
        32_000, ge=1, description="Longest prompt (all messages' text together), in characters.")
    max_messages: int = Field(256, ge=1, description="Most messages in one chat request.")
    extra_fields: list[str] = Field(
        default_factory=list,
        description="Request fields forwarded to the engine beyond the gateway's allow-list "
                    "(e.g. response_format, tools): each is passed unchecked, so name only "
                    "those your callers may use.")
    max_question_chars: int = Field(
        4_000, ge=1, description="Longest question a chain endpoint accepts, in characters.")
    keepalive_s: int = Field(
        65, ge=1, description="How long the gateway keeps a client's idle connection open; above "
                              "the idle timeouts of clients and load balancers (60 s), so that "
                              "they, not the gateway, close idle connections.")
    upstream_keepalive_s: float = Field(
        2.0, gt=0, description="How long an idle engine connection is kept; below the engine's "
                               "own keep-alive (vLLM: 5 s) so that it never closes one in use.")
    log_unready_after_s: float = Field(
        30, gt=0, description="/readyz turns 503 when the log has failed to flush this long.")
    log_backlog_limit: int = Field(
        100_000, ge=1, description="/readyz turns 503 when this many rows wait for a flush.")
    upstream_timeout_s: float = Field(120, gt=0, description="Engine timeout (then 503).")
    engine_check_interval_s: float = Field(
        2.0, gt=0, description="Over several engines (engine.url a list): how often each is "
                               "health-checked; one that fails leaves the rotation until it "
                               "answers again.")
    upstream_max_connections: int = Field(
        256, ge=1, description="Engine connections the gateway holds at most (more requests "
                               "wait for one).")
    limit_concurrency: int = Field(
        1024, ge=1, description="Connections and requests the server takes at once; beyond, "
                                "503 at once (uvicorn's limit_concurrency).")
    header_timeout_s: float = Field(
        10, gt=0, description="Longest time a request's headers may take to arrive, from their "
                              "first byte (then the connection is closed).")
    body_timeout_s: float = Field(
        30, gt=0, description="Longest wait for a request's body to arrive (then 408).")
    send_timeout_s: float = Field(
        30, gt=0, description="Longest wait for a client to take a stream's next bytes; a client "
                              "that stops reading is dropped (logged as 499).")
    shutdown_timeout_s: float = Field(
        30, gt=0, description="On SIGTERM, how long requests in flight may finish before the "
                              "gateway closes their connections.")
    readiness_cache_s: float = Field(
        1.0, ge=0, description="How long /readyz reuses its last check of the engine.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header values (names, no port) the gateway answers; empty: any with "
                    "keys, and without keys only loopback names (127.0.0.1, localhost, ::1), "
                    "so a web page cannot reach a keyless gateway by DNS rebinding.")
    trust_proxy_headers: bool = Field(
        False, description="Take the client's address from X-Forwarded-For, from the "
                           "forwarded_allow_ips proxies only (false: never).")
    forwarded_allow_ips: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="Proxies whose X-Forwarded-For is believed (with trust_proxy_headers).")
    default_chain_alias: str = Field("production", description="Alias a chain call uses.")
    rollout_refresh_s: float = Field(
        2.0, gt=0, description="How often the gateway re-reads the rollouts table (a started, "
                               "advanced or ended rollout takes effect within this time).")
    rollout_evaluate_s: float = Field(
        30.0, ge=0, description="How often the gateway judges running rollouts on new "
                                "evidence (0: only 'llmops rollout evaluate' does).")
    log_flush_interval_s: float = Field(1.0, gt=0, description="Longest wait before a Delta commit.")
    feedback_wait_s: float = Field(
        5.0, ge=0, description="Feedback for a request this gateway does not know, answered "
                               "less than this long ago (by another replica, whose log may not "
                               "have reached the table yet), waits until then for it to land "
                               "before it is refused (404).")
    log_batch_size: int = Field(512, ge=1, description="Rows per Delta commit at most.")
    log_fsync: bool = Field(
        False, description="Sync each logged row to disk before answering (survives a power "
                           "loss, not only a killed gateway; see benchmarks/wal_fsync.py for "
                           "its cost).")
    instance: str | None = Field(None, description=(
        "The gateway's instance id, naming its write-ahead log and its commits; unique among "
        "the gateways sharing a lakehouse (default gw-<host>-<port>)."))
    widget_chain: str = Field(
        "docs-qa", min_length=1,
        description="The chain the feedback page at / asks (an embed may name another: data-chain).")
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins whose pages may embed the widget (https://app.example.com, or '*' "
                    "for any); empty: the chain and feedback endpoints answer the same origin only.")

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        origins = [origin.strip().rstrip("/") for origin in value]
        for origin in origins:
            if origin != "*" and not _ORIGIN.match(origin):
                raise ValueError(f"'{origin}' is not an origin: write scheme://host[:port] with no "
                                 "path (https://app.example.com), or '*'")
        return origins


class AuthConfig(BaseModel):
    """API keys with scopes (invoke, feedback, admin); never logged."""

    model_config = ConfigDict(extra="forbid")

    required: bool = Field(False, description="Refuse requests without a key.")
    keys_env: str = Field("LLMOPS_API_KEYS", description="Env var: 'KEY=scope,scope;KEY2=admin'.")
    keys_file: str | None = Field(
        None, description="YAML file: {keys: [{key, scopes, name, max_concurrent, "
                          "requests_per_minute}]}.")
    default_max_concurrent: int | None = Field(
        32, ge=1, description="Concurrent requests per key where its entry sets none (null: no "
                              "limit).")
    default_requests_per_minute: float | None = Field(
        600, gt=0, description="Requests per minute per key (token bucket, as many at once) "
                               "where its entry sets none (null: no limit).")


class EndpointConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    engine: EngineConfig = Field(default_factory=EngineConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


def load_endpoint_config(settings: Settings, path: Path | None = None) -> EndpointConfig:
    """The endpoint settings for the settings' environment (staging and prod require keys)."""
    file = path or settings.root / ENDPOINT_FILE

    def for_env(raw: dict[str, Any]) -> dict[str, Any]:
        envs = raw.pop("envs", {}) or {}
        if not isinstance(envs, dict):
            raise ConfigError(f"{file}: 'envs' must map environment names to overrides")
        merged = _merge(raw, envs.get(settings.env, {}) or {})
        if settings.env != "dev":
            # staging and prod require keys whatever the file says
            auth = merged.get("auth")
            merged["auth"] = {**(auth if isinstance(auth, dict) else {}), "required": True}
        return merged

    return load_yaml_model(file, EndpointConfig, what="endpoint config", missing_ok=True,
                           prepare=for_env)
