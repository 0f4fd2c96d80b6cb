"""The intake's browser tests: the shared headless Chromium (tests/browser.py) and its request log."""

from __future__ import annotations

import json
from typing import Any


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
