"""Headless Chromium for the browser tests: Debian's chromium driven by selenium through chromedriver.

Without Chromium a browser test skips, unless CI=true or HASHFED_REQUIRE_BROWSER=1, where it fails. The browser
can reach 127.0.0.1 only (no name resolves; anything else goes to a dead proxy) and logs every request it makes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REQUIRE_BROWSER = os.environ.get("CI") == "true" or os.environ.get("HASHFED_REQUIRE_BROWSER") == "1"


def _browser_missing() -> str | None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401  (only probing that the test extra is installed)
    except ImportError:
        return "selenium not installed (pip install -e '.[test]')"
    return None


def require_browser() -> None:
    """Skip, or fail when CI=true or HASHFED_REQUIRE_BROWSER=1, if Chromium cannot be driven here."""
    problem = _browser_missing()
    if problem is None:
        return
    if REQUIRE_BROWSER:
        pytest.fail(f"{problem} (CI=true or HASHFED_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(problem)


def start_chromium(profile: Path, width: int = 1280, height: int = 1600) -> Any:
    """Headless Chromium that reaches 127.0.0.1 only and logs every network request it makes."""
    require_browser()
    from selenium import webdriver  # imported here so a missing selenium skips or fails as require_browser says
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
        # Cut the network: no name resolves, and anything that still tries goes to a dead proxy.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=127.0.0.1",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    # An explicit driver path: selenium never looks for (or downloads) a driver of its own.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(120)
    return driver


def chromium_session(profile: Path, width: int = 1280, height: int = 1600) -> Iterator[Any]:
    """A browser for a fixture, quit afterwards."""
    driver = start_chromium(profile, width, height)
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver: Any) -> list[str]:
    """The URL of every request in the DevTools performance log (inlined data: URIs never leave the browser)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return [u for u in urls if not u.startswith("data:")]
