"""API keys with scopes and limits, checked by Starlette's authentication middleware.

Keys come from an environment variable or a secrets file (validated as
``schema.KeysFile``). They are held only as SHA-256 digests and compared in constant
time; logs and the inference log record a key's name, never the key. A route states
the scope it needs with ``require``: no key (or a wrong one) is 401, a key without the
scope is 403.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
    has_required_scope,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request

from llmops.errors import ConfigError
from llmops.serving.config import AuthConfig, GatewayConfig
from llmops.serving.errors import HTTPError
from llmops.serving.schema import SCOPES, KeysFile, parse_scopes
from llmops.yamlfile import load_yaml_model

__all__ = ["SCOPES", "ApiKey", "HostCheck", "KeyRing", "allowed_hosts", "auth_middleware",
           "check_exposure", "load_keys", "require", "widget_only"]

@dataclass(frozen=True)
class ApiKey:
    """A key's name (what rows record), digest, scopes and limits (None: no limit)."""

    name: str
    digest: bytes
    scopes: frozenset[str]
    max_concurrent: int | None = None
    requests_per_minute: float | None = None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class KeyRing:
    """The keys a gateway accepts; ``admin`` implies every other scope."""

    def __init__(self, keys: list[ApiKey], required: bool) -> None:
        self.keys = keys
        self.required = required

    def find(self, presented: str | None) -> ApiKey | None:
        if not presented:
            return None
        digest = _digest(presented)
        for key in self.keys:
            if hmac.compare_digest(key.digest, digest):
                return key
        return None

    @staticmethod
    def allows(key: ApiKey, scope: str) -> bool:
        return scope in key.scopes or "admin" in key.scopes


def _parse_scopes(scopes: str, where: str) -> frozenset[str]:
    try:
        return parse_scopes(scopes)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_keys(config: AuthConfig, root: Path) -> KeyRing:
    """Keys from ``$keys_env`` (``KEY=scope,scope;KEY2=admin``) and ``keys_file``.

    Error messages name the variable or file and the entry's position, never a key.
    """
    keys: list[ApiKey] = []
    env_value = os.environ.get(config.keys_env, "")
    for i, entry in enumerate(e for e in env_value.split(";") if e.strip()):
        key, sep, scopes = entry.strip().rpartition("=")
        if not sep or not key:
            raise ConfigError(f"${config.keys_env} entry {i + 1}: expected KEY=scope[,scope]")
        keys.append(ApiKey(f"env-{i + 1}", _digest(key),
                           _parse_scopes(scopes, f"${config.keys_env} entry {i + 1}"),
                           config.default_max_concurrent, config.default_requests_per_minute))
    if config.keys_file:
        path = Path(config.keys_file)
        path = path if path.is_absolute() else root / path
        keys_file = load_yaml_model(path, KeysFile, what="keys file")
        for i, entry in enumerate(keys_file.keys):
            limits = entry.model_fields_set  # a limit left out is the default; null: no limit
            keys.append(ApiKey(
                entry.name or f"file-{i + 1}", _digest(entry.key), entry.scopes,
                entry.max_concurrent if "max_concurrent" in limits
                else config.default_max_concurrent,
                entry.requests_per_minute if "requests_per_minute" in limits
                else config.default_requests_per_minute))
    if config.required and not keys:
        raise ConfigError(
            f"this environment requires API keys and none are set: export {config.keys_env}="
            "'KEY=invoke,feedback;ADMINKEY=admin' or set auth.keys_file in serving/endpoint.yaml"
        )
    return KeyRing(keys, required=config.required or bool(keys))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, keys: KeyRing) -> None:
    """Keys are optional only on a loopback address: anything else refuses to start without."""
    if not keys.required and not _is_loopback(host):
        raise ConfigError(
            f"the gateway would listen on {host} with no API keys: set keys "
            "(LLMOPS_API_KEYS or auth.keys_file) or bind 127.0.0.1")


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def allowed_hosts(config: GatewayConfig, keys: KeyRing) -> frozenset[str] | None:
    """The Host names the gateway answers (None: any): ``gateway.allowed_hosts``, else, on a
    gateway without keys, loopback names only."""
    if config.allowed_hosts:
        return frozenset(h.lower() for h in config.allowed_hosts)
    return None if keys.required else frozenset(LOOPBACK_NAMES)


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class HostCheck:
    """421 for a request whose Host header the gateway does not answer to.

    Without keys, a web page on another site that rebinds its DNS name to 127.0.0.1 reaches a
    loopback gateway from the user's browser; its requests carry that site's name as Host.
    """

    def __init__(self, app: Any, allowed: frozenset[str] | None) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.allowed is not None and scope["type"] == "http":
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            if _host_name(host) not in self.allowed:
                import uuid

                response = HTTPError(421, "this gateway does not answer to the host "
                                          f"'{host[:100]}' (gateway.allowed_hosts)",
                                     "misdirected_request").response(uuid.uuid4().hex)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class KeyUser(BaseUser):
    """The caller: a key's holder, or anyone on a gateway that requires no keys."""

    def __init__(self, key: ApiKey | None, host: str) -> None:
        self.key, self.host = key, host

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.key.name if self.key else self.host

    @property
    def identity(self) -> str:
        return self.display_name


class KeyBackend(AuthenticationBackend):
    """``Authorization: Bearer KEY`` or ``X-Api-Key: KEY``; ``admin`` holds every scope."""

    def __init__(self, keys: KeyRing) -> None:
        self.keys = keys

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        host = conn.client.host if conn.client else ""
        if not self.keys.required:
            return AuthCredentials(sorted(SCOPES)), KeyUser(None, host)
        header = conn.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        token = token or conn.headers.get("x-api-key")
        if not token:
            return None  # unauthenticated: a route that needs a scope answers 401
        key = self.keys.find(token)
        if key is None:
            raise AuthenticationError("a valid API key is required (Authorization: Bearer KEY)")
        scopes = SCOPES if "admin" in key.scopes else key.scopes
        return AuthCredentials(sorted(scopes)), KeyUser(key, host)


def _auth_error(conn: HTTPConnection, exc: AuthenticationError) -> Any:
    import uuid

    return HTTPError(401, str(exc), "authentication_error").response(uuid.uuid4().hex)


def auth_middleware(keys: KeyRing) -> Middleware:
    return Middleware(AuthenticationMiddleware, backend=KeyBackend(keys), on_error=_auth_error)


def require(request: Request, scope: str | tuple[str, ...]) -> ApiKey | None:
    """The caller's key (None where keys are not required); 401 without one, 403 without the
    scope (or any of the scopes given)."""
    scopes = (scope,) if isinstance(scope, str) else scope
    if not request.user.is_authenticated:
        raise HTTPError(401, "a valid API key is required (Authorization: Bearer KEY)",
                        "authentication_error")
    if not any(has_required_scope(request, [s]) for s in scopes):
        raise HTTPError(403, f"this API key lacks the '{scopes[0]}' scope", "permission_error")
    return request.user.key


def widget_only(key: ApiKey | None) -> bool:
    """A key that may only ask chains and rate its own session's answers (scope ``widget``)."""
    return key is not None and "widget" in key.scopes and not key.scopes & {"invoke", "admin"}
