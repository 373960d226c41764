"""The feedback widget (``/``, ``/widget.js``), driven in a real headless Chromium.

A registered chain is served by a real gateway in front of the session's vLLM (CPU) engine;
the browser asks it, reads the answer, sends feedback, and the feedback table must hold the
row, linked to its inference_log row.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pandas as pd
import pytest
from pydantic import ValidationError

from llmops.chains import log_chain, promote
from llmops.indexing import update_index
from llmops.prompts import set_alias, sync_prompts
from llmops.serving.config import GatewayConfig
from tests.conftest import free_port
from tests.serving.conftest import wait_rows

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

CHROMIUM = Path("/usr/bin/chromium")  # Debian's build (`make test-install`); never downloaded
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ANSWER_TIMEOUT_MS = 180_000  # the gateway loads the chain on its first call, on a CPU engine
QUESTION = "How do I promote a chain to production?"


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: sync_api.Browser) -> Iterator[sync_api.Page]:
    context = browser.new_context()  # its own sessionStorage
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def served_chain(project: Path, settings, docs_indexed) -> None:
    """docs-qa registered and promoted, as in test_chain_endpoint."""
    sync_prompts(settings)
    set_alias("qa", "production", 1, settings)
    update_index(settings, progress=False, record=False)
    logged = log_chain(project / "chains" / "docs_qa.py", alias="staging", settings=settings)
    promote("docs-qa", "production", logged.version, settings=settings)


def test_assets_carry_the_gateway_settings() -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from llmops.serving.page import widget_routes

    app = Starlette(routes=widget_routes(GatewayConfig(widget_chain="support-bot"), True))
    with TestClient(app) as client:
        script = client.get("/widget.js")
        page = client.get("/")
        css = client.get("/widget.css")
    assert script.headers["content-type"].startswith("text/javascript")
    assert 'var SERVER = {"chain": "support-bot", "authRequired": true};' in script.text
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["content-security-policy"].endswith("frame-ancestors 'self'")
    assert '<script src="/widget.js"' in page.text and css.status_code == 200


def test_cors_origins_are_checked() -> None:
    config = GatewayConfig(cors_origins=["https://app.example.com/", "http://127.0.0.1:8080", "*"])
    assert config.cors_origins == ["https://app.example.com", "http://127.0.0.1:8080", "*"]
    assert GatewayConfig().cors_origins == []  # same origin only
    for bad in ("app.example.com", "https://app.example.com/help"):
        with pytest.raises(ValidationError, match="is not an origin"):
            GatewayConfig(cors_origins=[bad])


def test_only_the_cors_origins_may_frame_the_page() -> None:
    from llmops.serving.page import page_csp

    assert page_csp([]).endswith("; frame-ancestors 'self'")
    assert page_csp(["https://app.example.com", "http://127.0.0.1:8080"]).endswith(
        "; frame-ancestors 'self' https://app.example.com http://127.0.0.1:8080")
    assert page_csp(["https://a.example", "*"]).endswith("; frame-ancestors *")


def ask(page: sync_api.Page, question: str, submit: str = "click") -> dict:
    """Ask through the widget; the chain's JSON answer once the page shows it."""
    page.get_by_label("Your question").fill(question)
    with page.expect_response("**/v1/chains/docs-qa/invoke", timeout=ANSWER_TIMEOUT_MS) as info:
        if submit == "click":
            page.get_by_role("button", name="Ask", exact=True).click()
        else:
            page.get_by_label("Your question").press(submit)
    assert info.value.ok, info.value.text()
    body = info.value.json()
    expect(page.locator(".ask-status")).to_have_text("Answer ready. Rate it below.")
    expect(page.locator(".answer-text")).to_have_text(body["answer"] or "(empty answer)")
    expect(page.locator(".sources li")).to_have_text(body["sources"] or ["(no sources)"])
    return body


def inference_row(project: Path, request_id: str):
    rows = wait_rows(project, "inference_log", 1)
    return rows[rows["request_id"] == request_id].iloc[0]


def test_page_asks_and_records_feedback(project: Path, served_chain, start_gateway,
                                        page: sync_api.Page) -> None:
    gw = start_gateway()
    page.goto(gw.url + "/")
    expect(page.get_by_role("heading", name="Ask the assistant (docs-qa)")).to_be_visible()
    expect(page.get_by_label("API key")).to_be_hidden()  # this gateway needs no keys
    expect(page.get_by_text("Keyboard shortcuts")).to_be_visible()

    answer = ask(page, QUESTION)
    docs = {p.name for p in (project / "docs").glob("*.md")}
    assert answer["sources"] and set(answer["sources"]) <= docs
    correction = page.get_by_label("Corrected answer")
    expect(correction).to_have_value(answer["answer"])  # pre-filled with the answer

    page.get_by_role("button", name="Thumbs down").click()
    expect(page.get_by_role("button", name="Thumbs down")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("button", name="Thumbs up")).to_have_attribute("aria-pressed", "false")
    correction.fill("Run `llmops chains promote docs-qa --alias production` after the gate.")
    page.get_by_label("Comment").fill("It should name the CLI command.")
    page.get_by_role("radio", name="2").check()

    # A network failure, made by aborting the request in the browser: the gateway never
    # sees it, exactly as when the network drops. The form must keep everything for a retry.
    page.route("**/v1/feedback", lambda route: route.abort("internetdisconnected"))
    page.get_by_role("button", name="Send feedback").click()
    alert = page.get_by_role("alert").filter(has_text="Feedback not sent")
    expect(alert).to_contain_text("cannot be reached (network error)")
    expect(page.get_by_role("button", name="Send feedback")).to_be_enabled()
    expect(page.get_by_label("Comment")).to_have_value("It should name the CLI command.")
    page.unroute("**/v1/feedback")

    page.get_by_role("button", name="Send feedback").click()
    expect(page.get_by_role("status").filter(has_text="feedback recorded")).to_have_text(
        "Thanks \u2014 feedback recorded.")
    expect(alert).to_be_hidden()
    for control in (page.get_by_role("button", name="Send feedback"),
                    page.get_by_role("button", name="Thumbs up"), correction,
                    page.get_by_role("radio", name="2")):
        expect(control).to_be_disabled()

    rows = wait_rows(project, "feedback", 1)
    assert len(rows) == 1  # the aborted attempt never reached the gateway
    fb = rows.iloc[0]
    assert fb["request_id"] == answer["request_id"]
    assert (fb["rating"], fb["score"], fb["source"]) == (-1, 2, "web")
    assert fb["correction"] == "Run `llmops chains promote docs-qa --alias production` after the gate."
    assert fb["comment"] == "It should name the CLI command."
    logged = inference_row(project, answer["request_id"])
    assert (logged["chain"], logged["status"], logged["response"]) == (
        "docs-qa", 200, answer["answer"])


def test_keyboard_shortcuts(project: Path, served_chain, start_gateway,
                            page: sync_api.Page) -> None:
    gw = start_gateway()
    page.goto(gw.url + "/")
    answer = ask(page, "What does the index job do?", submit="Control+Enter")
    expect(page.locator(".answer")).to_be_focused()  # so that the single keys work at once
    thumbs_up = page.get_by_role("button", name="Thumbs up")
    page.keyboard.press("+")
    expect(thumbs_up).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("-")
    expect(thumbs_up).to_have_attribute("aria-pressed", "false")
    expect(page.get_by_role("button", name="Thumbs down")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("-")  # again: undone
    expect(page.get_by_role("button", name="Thumbs down")).to_have_attribute("aria-pressed", "false")
    page.keyboard.press("+")
    page.keyboard.press("5")
    expect(page.get_by_role("radio", name="5")).to_be_checked()

    comment = page.get_by_label("Comment")
    comment.fill("Clear + short")  # '+' typed in a text field is text, not a shortcut
    expect(thumbs_up).to_have_attribute("aria-pressed", "true")
    comment.press("Control+Enter")
    expect(page.get_by_role("status").filter(has_text="feedback recorded")).to_be_visible()

    fb = wait_rows(project, "feedback", 1).iloc[0]
    assert fb["request_id"] == answer["request_id"]
    assert (fb["rating"], fb["score"], fb["comment"], fb["source"]) == (1, 5, "Clear + short", "web")
    assert pd.isna(fb["correction"])  # the pre-filled answer, unchanged, is not a correction


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A second web server (another port: another origin) for an application's own page."""
    folder = tmp_path / "app-site"
    folder.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()),
                                 partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


def test_embedded_in_another_origin(project: Path, served_chain, start_gateway, other_origin,
                                    page: sync_api.Page) -> None:
    origin, site = other_origin
    # a widget key: safe in the partner's public HTML (chains, and its visitors' own answers)
    gw = start_gateway(env={"LLMOPS_API_KEYS": "k-widget=widget"}, cors_origins=[origin])
    (site / "help.html").write_text(
        "<!doctype html><title>Partner app</title><h1>Partner app</h1>\n"
        f'<script src="{gw.url}/widget.js" data-chain="docs-qa" data-api-key="k-widget" '
        "async></script>\n<p>Footer</p>\n")
    page.goto(origin + "/help.html")
    expect(page.get_by_role("heading", name="Ask the assistant (docs-qa)")).to_be_visible()
    expect(page.get_by_label("API key")).to_be_hidden()  # data-api-key gave it

    answer = ask(page, QUESTION)
    page.get_by_role("button", name="Thumbs up").click()
    with page.expect_response("**/v1/feedback") as sent:
        page.get_by_role("button", name="Send feedback").click()
    assert sent.value.ok and sent.value.headers["access-control-allow-origin"] == origin
    expect(page.get_by_role("status").filter(has_text="feedback recorded")).to_be_visible()

    fb = wait_rows(project, "feedback", 1).iloc[0]
    assert (fb["request_id"], fb["rating"], fb["source"]) == (answer["request_id"], 1, "web")
    assert fb["user"] == "env-1"  # the key's name: the widget sent data-api-key
    assert inference_row(project, answer["request_id"])["chain"] == "docs-qa"

    # CORS covers the widget's two calls for the configured origin, nothing else
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    h = httpx.Client(base_url=gw.url, timeout=30)
    assert h.options("/v1/feedback", headers={"Origin": origin, **preflight}).status_code == 200
    assert h.options("/v1/feedback",
                     headers={"Origin": "http://elsewhere.example", **preflight}).status_code == 400
    models = h.get("/v1/models", headers={"Origin": origin, "Authorization": "Bearer k-widget"})
    assert "access-control-allow-origin" not in models.headers

    # What anyone can do with the page's key: ask the chain, and rate the answers of the
    # session the gateway signed for them, nothing else
    wk = {"Authorization": "Bearer k-widget"}
    assert models.status_code == 403
    assert h.post("/v1/chat/completions", headers=wk, json={
        "model": "base", "messages": [{"role": "user", "content": "hi"}]}).status_code == 403
    assert h.post("/v1/chains/docs-qa/invoke", headers=wk,
                  json={"question": QUESTION, "alias": "staging"}).status_code == 403
    visitor = h.post("/v1/chains/docs-qa/invoke", headers=wk,
                     json={"question": QUESTION, "user": "someone-else"})
    assert visitor.status_code == 200, visitor.text
    token, rid = visitor.headers["x-llmops-session"], visitor.json()["request_id"]
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    for headers in (wk, {**wk, "X-Llmops-Session": forged}):
        refused = h.post("/v1/feedback", headers=headers, json={"request_id": rid, "rating": -1})
        assert refused.status_code == 403, refused.text
    # nor the browser's answer, from this session
    assert h.post("/v1/feedback", headers={**wk, "X-Llmops-Session": token},
                  json={"request_id": answer["request_id"], "rating": -1}).status_code == 403
    assert h.post("/v1/feedback", headers={**wk, "X-Llmops-Session": token},
                  json={"request_id": rid, "rating": -1}).status_code == 200
    # the log names the session, not what the page claimed
    from llmops.processes import wait_until
    from tests.serving.conftest import read_rows

    logged = wait_until(lambda: (lambda rows: rows[rows["request_id"] == rid])(
        read_rows(project, "inference_log")).to_dict("records"), timeout=30,
        what="the visitor's row")
    assert logged[0]["end_user"] == f"session:{token.split('.')[0]}"

    # data-gateway is read as a URL, never pasted into markup: an attribute that tries to
    # break out of it mounts nothing and runs nothing
    (site / "hostile.html").write_text(
        "<!doctype html><title>Hostile</title>\n"
        f'<script src="{gw.url}/widget.js" data-gateway=\'x"><img src=x '
        "onerror=\"window.injected=1\">' async></script>\n")
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(origin + "/hostile.html")
    page.wait_for_function("() => document.readyState === 'complete'")
    expect(page.locator(".llmops-widget")).to_have_count(0)
    assert page.evaluate("window.injected") is None
    assert any("data-gateway is not an http(s) URL" in e for e in errors), errors

    # The gateway's own page asks for the key itself, and shows the server's refusal.
    page.goto(gw.url + "/")
    key = page.get_by_label("API key")
    expect(key).to_be_visible()
    key.fill("wrong-key")
    page.get_by_label("Your question").fill(QUESTION)
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.get_by_role("alert").filter(has_text="Could not get an answer")).to_contain_text(
        "a valid API key is required (Authorization: Bearer KEY) (HTTP 401)")
    key.fill("k-widget")
    assert page.evaluate("sessionStorage.getItem('llmops-widget-key:' + location.origin)") == (
        "k-widget")
    ask(page, QUESTION)
