"""`/docs` works offline: the page and its assets come from the hub, under a policy naming only the hub's origin.

The browser test opens the page in headless Chromium with every other host unreachable and checks every request
the browser made. Without Chromium it skips, unless CI=true or HASHFED_REQUIRE_BROWSER=1, where it fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from flask.testing import FlaskClient

from hub.app import create_app
from hub.config import Settings
from tests.browser import chromium_session, requested_urls
from tests.ports import serving

CONTENT_TYPES = {
    ".css": {"text/css"},
    ".js": {"text/javascript", "application/javascript"},
    ".png": {"image/png"},
}
# What each directive of the policy may name: the hub itself, nothing, data: images, inline style attributes.
ALLOWED_SOURCES = {"'self'", "'none'", "data:", "'unsafe-inline'"}


class References(HTMLParser):
    """Every src and href of a page, and the bodies of its script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.script_bodies: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value is not None]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_bodies.append(data)


def references(html: str) -> References:
    parser = References()
    parser.feed(html)
    return parser


def policy(header: str) -> dict[str, list[str]]:
    directives = (d.split() for d in header.split(";") if d.strip())
    return {name: sources for name, *sources in directives}


def test_docs_page_references_only_the_hub(client: FlaskClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    assert r.mimetype == "text/html"
    page = references(r.get_data(as_text=True))
    assert page.urls
    for url in page.urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), url
    # No inline script: a policy with script-src 'self' alone lets the page run.
    assert [body for body in page.script_bodies if body.strip()] == []


def test_every_asset_of_the_page_is_served_by_the_hub(client: FlaskClient) -> None:
    page = references(client.get("/docs").get_data(as_text=True))
    for url in page.urls:
        r = client.get(urljoin("/docs", url))
        assert r.status_code == 200, url
        assert r.mimetype in CONTENT_TYPES[Path(urlsplit(url).path).suffix], (url, r.mimetype)
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        if url.endswith(".css"):
            # The stylesheet's own references are inlined images, never a fetch elsewhere.
            inner = re.findall(r"url\(\s*['\"]?([^'\")]+)", r.get_data(as_text=True))
            assert all(u.startswith("data:") for u in inner), inner


def test_docs_and_assets_carry_a_same_origin_policy(client: FlaskClient) -> None:
    page = references(client.get("/docs").get_data(as_text=True))
    for url in ["/docs", *(urljoin("/docs", u) for u in page.urls)]:
        r = client.get(url)
        csp = policy(r.headers["Content-Security-Policy"])
        assert set().union(*csp.values()) <= ALLOWED_SOURCES, (url, csp)
        assert csp["script-src"] == ["'self'"]
        assert csp["default-src"] == ["'self'"]
        assert csp["frame-ancestors"] == ["'none'"]
        assert csp["base-uri"] == ["'none'"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"


def test_only_the_page_s_assets_are_served(client: FlaskClient) -> None:
    # The package directory also holds a demo page pointing at petstore.swagger.io; it stays unserved.
    assert client.get("/docs/index.html").status_code == 404
    assert client.get("/docs/swagger-initializer.js").status_code == 404


def test_openapi_document_is_served(client: FlaskClient) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    assert r.json["info"]["title"] == "hashfed hub"


@pytest.fixture
def served_hub(tmp_path: Path) -> Iterator[str]:
    """The hub on a real HTTP server on a free port; its base URL.

    The docs page reads no database, so a URL never connected to is enough (no partner set-up as in
    tests/partners/realhub.py, which serves through the test client rather than a socket).
    """
    settings = Settings(var_dir=tmp_path / "var", database_url="postgresql://nobody@127.0.0.1:1/none")
    with serving(create_app(settings)) as url:
        yield url


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium that can reach 127.0.0.1 only, logging every network request it makes."""
    yield from chromium_session(tmp_path / "chromium")


def test_docs_render_in_a_browser_with_no_request_leaving_the_hub(
    served_hub: str, chromium: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    # Chromium opens its new tab page (chrome:// resources) at start; leave it and drop its log entries first.
    chromium.get("about:blank")
    chromium.get_log("performance")
    chromium.get(f"{served_hub}/docs")
    wait = WebDriverWait(chromium, 30)
    title = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".swagger-ui .info .title")))
    assert "hashfed hub" in title.text
    operations = wait.until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, ".swagger-ui .opblock")))
    assert any("/readyz" in op.text for op in operations)

    screenshot = tmp_path / "docs.png"
    assert chromium.save_screenshot(str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    urls = requested_urls(chromium)
    assert f"{served_hub}/openapi.json" in urls and f"{served_hub}/docs/swagger-ui-bundle.js" in urls
    origin = urlsplit(served_hub)
    assert [u for u in urls if (urlsplit(u).scheme, urlsplit(u).netloc) != (origin.scheme, origin.netloc)] == []
    # Anything the policy blocked would be a console error: the page needs nothing it forbids.
    errors = [e["message"] for e in chromium.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
