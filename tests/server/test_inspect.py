"""``GET /inspect``: the inspector page, behind the proxy's token, driven in a real headless
Chromium (Debian's ``chromium`` through Playwright) against a real proxy on loopback."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragzip.server.inspect import PAGE_HEADERS

from .conftest import ServerThread

TOKEN = "inspect-secret-token-0123456789"
QUESTION = "How long is the Seine?"
PASSAGES = [
    "The river Seine flows through Paris. It is 777 km long. Boats carry tourists on it.",
    "Paris is the capital of France. About two million people live there. It has many museums.",
]
SCREENSHOT_ENV = "RAGZIP_INSPECT_SCREENSHOT"
"""Where the browser test saves its screenshot (``make figures`` points it into docs/images)."""


@pytest.fixture
def secured(serve_proxy: Any, upstream_server: ServerThread) -> ServerThread:
    server: ServerThread = serve_proxy(
        upstream_server.url, auth_token=TOKEN, default_compressor="mig", default_budget="2x"
    )
    return server


def _basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"me:{password}".encode()).decode()}


def test_the_page_is_behind_the_token_and_self_contained(secured: ServerThread) -> None:
    anonymous = httpx.get(f"{secured.url}/inspect")
    assert anonymous.status_code == 401
    assert "Basic" in anonymous.headers["www-authenticate"]  # a browser asks for the token
    assert httpx.get(f"{secured.url}/inspect", headers=_basic("wrong")).status_code == 401
    for headers in (_basic(TOKEN), {"Authorization": f"Bearer {TOKEN}"}):
        page = httpx.get(f"{secured.url}/inspect", headers=headers)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        for name, value in PAGE_HEADERS.items():
            assert page.headers[name] == value
        assert 'value="mig"' in page.text and 'value="2x"' in page.text  # the proxy's defaults
        assert "http://" not in page.text and "https://" not in page.text  # nothing fetched
    # the API takes Basic too, so the page's own calls work once the browser logged in
    api = httpx.post(
        f"{secured.url}/v1/compress",
        json={"query": QUESTION, "passages": PASSAGES},
        headers=_basic(TOKEN),
    )
    assert api.status_code == 200


def test_no_inspect_removes_the_page(serve_proxy: Any, upstream_server: ServerThread) -> None:
    server = serve_proxy(upstream_server.url, inspect=False)
    assert httpx.get(f"{server.url}/inspect").status_code == 404
    assert httpx.get(f"{server.url}/healthz").status_code == 200


CHROMIUM = shutil.which("chromium")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
def test_in_headless_chromium_kept_text_is_highlighted(
    secured: ServerThread, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            context = browser.new_context(
                http_credentials={"username": "me", "password": TOKEN},
                viewport={"width": 1280, "height": 820},
            )
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            assert page.goto(f"{secured.url}/inspect").status == 200  # type: ignore[union-attr]
            page.fill("#question", QUESTION)
            page.fill("#passages", "\n\n".join(PASSAGES))
            page.fill("#compressor", "mig")
            page.fill("#budget", "2x")
            page.click("#submit")
            page.wait_for_selector("#result .passage")
            summary = page.inner_text("#summary")
            assert summary.startswith("mig: ") and "budget" in summary
            kept = page.locator("mark.kept").all_inner_texts()
            dropped = page.locator("span.dropped").all_inner_texts()
            assert any("777 km" in k for k in kept)  # the answer was kept and highlighted
            assert dropped  # 2x drops something, shown dimmed
            shown = page.locator("#result .text").all_inner_texts()
            assert shown == PASSAGES  # kept + dropped = each passage, whole and in order
            assert page.inner_text("#error") == ""
            shot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "inspect.png")
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            assert not errors
            # a whole request body works too; a bad one is a clear error on the page
            page.fill(
                "#body",
                '{"messages": [{"role": "user", "content": [{"type": "text", '
                f'"text": "{QUESTION}"}}]}}], "ragzip": {{"passages": ["{PASSAGES[0]}"]}}}}',
            )
            page.click("#submit")
            sync_api.expect(page.locator("#result .passage")).to_have_count(1)
            page.fill("#body", "{not json")
            page.click("#submit")
            assert page.inner_text("#error").startswith("request body:")
        finally:
            browser.close()
