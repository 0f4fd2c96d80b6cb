"""One headless Chromium per test module for the intake's browser tests (the set-up of tests/hub/test_apidocs.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.hub.test_apidocs import CHROMEDRIVER, CHROMIUM, require_browser


def start_chromium(profile: Path, width: int = 1280) -> Any:
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
        f"--window-size={width},1600",
        f"--user-data-dir={profile}",
        # Cut the network: no name resolves, and anything that still tries goes to a dead proxy.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=127.0.0.1",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(120)
    return driver


def chromium_session(profile: Path, width: int = 1280) -> Iterator[Any]:
    """A browser for a module-scoped fixture, quit afterwards."""
    driver = start_chromium(profile, width)
    try:
        yield driver
    finally:
        driver.quit()


def network_requests(driver: Any) -> list[dict[str, Any]]:
    """Every request in the DevTools performance log since the last call: url, method, headers, body."""
    out = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            request = message["params"]["request"]
            out.append(
                {
                    "url": request["url"],
                    "method": request["method"],
                    "headers": request.get("headers", {}),
                    "body": request.get("postData", ""),
                    "has_body": bool(request.get("hasPostData")),
                }
            )
    return out
