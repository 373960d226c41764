"""API keys with scopes. Keys come from an environment variable or a secrets file.

Keys are held only as SHA-256 digests and compared in constant time; logs and
the inference log record a key's name, never the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from llmops.errors import ConfigError
from llmops.serving.config import AuthConfig

__all__ = ["SCOPES", "ApiKey", "KeyRing", "load_keys"]

SCOPES = frozenset({"invoke", "feedback", "admin"})


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: bytes
    scopes: frozenset[str]


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


def _parse_scopes(scopes: list[str] | str, where: str) -> frozenset[str]:
    items = scopes.split(",") if isinstance(scopes, str) else scopes
    found = frozenset(s.strip() for s in items if s.strip())
    unknown = found - SCOPES
    if unknown or not found:
        raise ConfigError(
            f"{where}: scopes must be some of {', '.join(sorted(SCOPES))}; got "
            f"{', '.join(sorted(unknown)) or '(none)'}"
        )
    return found


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
                           _parse_scopes(scopes, f"${config.keys_env} entry {i + 1}")))
    if config.keys_file:
        path = Path(config.keys_file)
        path = path if path.is_absolute() else root / path
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read keys file {path}: {exc.__class__.__name__}") from exc
        for i, item in enumerate(data.get("keys", []) if isinstance(data, dict) else []):
            if not isinstance(item, dict) or not item.get("key"):
                raise ConfigError(f"{path}: keys[{i}] needs 'key' and 'scopes'")
            keys.append(ApiKey(str(item.get("name") or f"file-{i + 1}"), _digest(str(item["key"])),
                               _parse_scopes(item.get("scopes", []), f"{path}: keys[{i}]")))
    if config.required and not keys:
        raise ConfigError(
            f"this environment requires API keys and none are set: export {config.keys_env}="
            "'KEY=invoke,feedback;ADMINKEY=admin' or set auth.keys_file in serving/endpoint.yaml"
        )
    return KeyRing(keys, required=config.required or bool(keys))
