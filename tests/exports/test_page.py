"""The public /transparency page: through the test client, and rendered in headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.exports import service
from hub.transparency.auditlog import Actor
from tests.browser import chromium_session, requested_urls
from tests.exports import scenario as sc
from tests.ports import serving


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Any]:
    yield from chromium_session(tmp_path / "chromium")


@pytest.fixture
def published(session: Session, settings: Any) -> Any:
    q = sc.build(session, settings)
    with sc.at(sc.EXPORTED):
        return service.create(session, q.keys, sc.Q3, actor=Actor.operator(), partner_id=None, threshold=10,
                              publish=True)


def test_the_page_says_when_nothing_is_published(client: FlaskClient) -> None:
    page = client.get("/transparency")
    assert page.status_code == 200 and b"No period has been published yet" in page.data
    assert client.get("/transparency/bundle").status_code == 404


def test_the_page_shows_the_published_period(client: FlaskClient, published: Any) -> None:
    page = client.get("/transparency")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "2026-Q3" in html and published.bundle_sha256 in html and 'href="/transparency/bundle"' in html
    assert "withheld" in html  # the small cells of the quarter stay withheld on the page
    assert 'id="disputes"' in html and "Median time from dispute to decision" in html
    assert "<script" not in html
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    bundle = client.get("/transparency/bundle")
    assert bundle.status_code == 200 and bundle.headers["Digest"] == f"sha-256={published.bundle_sha256}"
    assert client.get("/transparency/page.css").mimetype == "text/css"


@pytest.fixture
def served(app: Flask, published: Any) -> Iterator[str]:
    # One thread: every request shares the test's transaction (and its connection).
    with serving(app, threaded=False) as url:
        yield url


def test_the_page_renders_in_a_browser_with_nothing_from_elsewhere(
    served: str, chromium: Any, published: Any
) -> None:
    from selenium.webdriver.common.by import By

    chromium.get("about:blank")
    chromium.get_log("performance")
    chromium.get(f"{served}/transparency")
    assert chromium.find_element(By.ID, "period").text == "2026-Q3"
    assert chromium.find_element(By.ID, "digest").text == published.bundle_sha256
    assert chromium.find_element(By.ID, "outcomes-chart").is_displayed()
    assert chromium.find_element(By.ID, "download").get_attribute("href") == f"{served}/transparency/bundle"
    urls = requested_urls(chromium)
    assert f"{served}/transparency/page.css" in urls
    origin = urlsplit(served)
    assert [u for u in urls if (urlsplit(u).scheme, urlsplit(u).netloc) != (origin.scheme, origin.netloc)] == []
    errors = [e["message"] for e in chromium.get_log("browser") if e["level"] == "SEVERE"]
    assert [e for e in errors if "favicon" not in e] == []
