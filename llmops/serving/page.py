"""The feedback page at ``/`` and the one script (``widget.js``) that another application embeds.

The page and an embedding page run the same ``widget.js``; it asks a chain
(``/v1/chains/{name}/invoke``) and sends feedback (``/v1/feedback``) to the gateway it was
loaded from. Those two endpoints answer CORS for ``gateway.cors_origins`` (none by default:
same origin only); every other endpoint stays same-origin. The assets (``static/``) are
served without a key; the API calls they make need one where the gateway requires keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from importlib.resources import files

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from llmops.serving.config import GatewayConfig

__all__ = ["WidgetCORS", "page_csp", "widget_middleware", "widget_routes"]

_CORS_PATHS = re.compile(r"^/v1/(chains/[^/]+/invoke|feedback)$")
_DEFAULTS = re.compile(r"/\*defaults\*/.*?/\*defaults\*/")
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
# the page loads only its own script and stylesheet and calls only its own gateway
_PAGE_CSP = "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'"


def page_csp(origins: list[str]) -> str:
    """The page's CSP: only this gateway and ``cors_origins`` may frame it."""
    ancestors = "*" if "*" in origins else " ".join(["'self'", *origins])
    return f"{_PAGE_CSP}; frame-ancestors {ancestors}"


def _asset(name: str) -> bytes:
    return (files("llmops.serving") / "static" / name).read_bytes()


def _static(body: bytes, media_type: str,
            **headers: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return Response(body, media_type=media_type, headers={**_HEADERS, **headers})

    return endpoint


def widget_routes(config: GatewayConfig, auth_required: bool) -> list[Route]:
    """``GET /`` (the page), ``/widget.js`` and ``/widget.css``.

    The script is served with this gateway's defaults written in: the chain it asks
    (``widget_chain``) and whether it must ask the user for a key.
    """
    defaults = json.dumps({"chain": config.widget_chain, "authRequired": auth_required})
    script = _DEFAULTS.sub(lambda _: defaults, _asset("widget.js").decode("utf-8"), count=1)
    return [
        Route("/", _static(_asset("index.html"), "text/html; charset=utf-8",
                           **{"Content-Security-Policy": page_csp(config.cors_origins)}), methods=["GET"]),
        Route("/widget.js", _static(script.encode("utf-8"), "text/javascript; charset=utf-8"),
              methods=["GET"]),
        Route("/widget.css", _static(_asset("widget.css"), "text/css; charset=utf-8"),
              methods=["GET"]),
    ]


class WidgetCORS:
    """Starlette's CORS, for the widget's two API calls only."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app, allow_origins=origins, allow_methods=["POST"],
            allow_headers=["Authorization", "Content-Type", "X-Api-Key", "X-Request-Id",
                           "X-Llmops-Session"],
            expose_headers=["X-Request-Id", "X-Llmops-Session"], max_age=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _CORS_PATHS.match(scope["path"]):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def widget_middleware(config: GatewayConfig) -> list[Middleware]:
    """The CORS middleware where ``cors_origins`` names origins; none otherwise."""
    return [Middleware(WidgetCORS, origins=config.cors_origins)] if config.cors_origins else []
