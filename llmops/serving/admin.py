"""Admin endpoints (``admin`` scope): load registered LoRA adapters into the running engine.

``POST /admin/adapters/load`` takes ``{"name", "alias"?, "version"?}`` (default alias
``production``), fetches that version from the registry, checks it against the
engine, and loads it through vLLM's runtime LoRA API without a restart. Requests
then pick it with ``model`` = its served name (``docs-qa-lora-v3``).
``POST /admin/adapters/unload`` takes ``{"model"}``. Paths are never accepted.
"""

from __future__ import annotations

import json
import logging
import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmops.serving.adapters import AdapterError, LoadedAdapter
from llmops.serving.errors import HTTPError
from llmops.serving.state import GatewayState

__all__ = ["admin_routes", "ensure_adapter"]

log = logging.getLogger(__name__)
_SERVED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*-v[0-9]+$")
_LOAD_FIELDS = {"name", "alias", "version"}


async def ensure_adapter(gw: GatewayState, ref: str) -> LoadedAdapter:
    """Load registered adapter ``ref`` into the engine unless it is there already."""
    if gw.adapters is None:
        raise HTTPError(409, "this gateway serves no adapters", "adapter_error")
    try:
        adapter = await run_in_threadpool(gw.adapters.resolve, ref)
    except AdapterError as exc:
        raise HTTPError(exc.status, str(exc), "adapter_error") from exc
    if adapter.served_name in await gw.upstream.known_models(refresh=True):
        return adapter
    status, text = await gw.upstream.post_json("/v1/load_lora_adapter", {
        "lora_name": adapter.served_name, "lora_path": str(adapter.path)})
    if status != 200 and "already" not in text:
        try:
            message = json.loads(text).get("error", {}).get("message") or text
        except (ValueError, AttributeError):
            message = text
        raise HTTPError(502 if status < 500 else 503,
                        f"the engine refused adapter {adapter.served_name}: {str(message)[:300]}",
                        "adapter_error")
    await gw.upstream.known_models(refresh=True)
    log.info("loaded adapter %s/%s as %s", adapter.name, adapter.version, adapter.served_name)
    return adapter


def admin_routes(gw: GatewayState) -> list[Route]:
    async def load(request: Request) -> Response:
        rid = gw.new_request_id()
        key, slot = None, False
        try:
            key, slot = gw.admit(request, "admin", "/admin/adapters/load")
            payload, _ = await gw.read_json(request)
            extra = set(payload) - _LOAD_FIELDS
            if extra:
                raise HTTPError(400, "adapters load from the registry only: send {name, alias?} "
                                     f"or {{name, version?}}; not accepted: {', '.join(sorted(extra))}")
            name, alias, version = payload.get("name"), payload.get("alias"), payload.get("version")
            if not isinstance(name, str) or not name:
                raise HTTPError(400, "'name' must be a registered adapter's name")
            if alias is not None and version is not None:
                raise HTTPError(400, "give 'alias' or 'version', not both")
            if alias is not None and not isinstance(alias, str):
                raise HTTPError(400, "'alias' must be a string")
            if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                        or version < 1):
                raise HTTPError(400, "'version' must be a positive integer")
            ref = f"{name}/{version}" if version is not None else f"{name}@{alias or 'production'}"
            adapter = await ensure_adapter(gw, ref)
        except HTTPError as err:
            return err.response(rid)
        finally:
            gw.release(key, slot)
        return JSONResponse({"loaded": adapter.as_json()}, headers={"X-Request-Id": rid})

    async def unload(request: Request) -> Response:
        rid = gw.new_request_id()
        key, slot = None, False
        try:
            key, slot = gw.admit(request, "admin", "/admin/adapters/unload")
            payload, _ = await gw.read_json(request)
            model = payload.get("model")
            if not isinstance(model, str) or not _SERVED.match(model) or set(payload) != {"model"}:
                raise HTTPError(400, "send {model}: a loaded adapter's served name (NAME-vN)")
            if model not in await gw.upstream.known_models(refresh=True):
                raise HTTPError(404, f"adapter '{model}' is not loaded", "model_not_found")
            status, text = await gw.upstream.post_json("/v1/unload_lora_adapter", {"lora_name": model})
            if status != 200:
                raise HTTPError(502, f"the engine refused to unload {model}: {text[:300]}",
                                "adapter_error")
            await gw.upstream.known_models(refresh=True)
        except HTTPError as err:
            return err.response(rid)
        finally:
            gw.release(key, slot)
        return JSONResponse({"unloaded": model}, headers={"X-Request-Id": rid})

    return [Route("/admin/adapters/load", load, methods=["POST"]),
            Route("/admin/adapters/unload", unload, methods=["POST"])]
