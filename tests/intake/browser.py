"""The intake's browser tests: the shared headless Chromium (tests/browser.py), its request log, an axe-core
audit and a walk through the page with the Tab key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# axe-core's minified build, vendored with its licence (tests/intake/vendor/README.md): no network needed.
AXE_JS = Path(__file__).resolve().parent / "vendor" / "axe.min.js"

# What a keyboard reaches: links, controls that are not disabled, and anything with a tabindex of 0 or more.
_FOCUSABLE = (
    "a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), select:not([disabled]), "
    "textarea:not([disabled]), [tabindex]:not([tabindex='-1'])"
)


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


def axe_violations(driver: Any) -> list[str]:
    """Run axe-core on the current page (every rule of its WCAG 2.0/2.1/2.2 A and AA tags and best practices)
    and describe each violation, of any impact, as `impact rule: target (summary)`."""
    if not driver.execute_script("return typeof window.axe === 'object'"):
        # Run by the driver, not by a <script> element: the page's Content-Security-Policy stays as it is.
        driver.execute_script(AXE_JS.read_text(encoding="utf-8") + "\n;window.axe = axe;")
    results = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        window.axe.run(document, {
          runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]},
          resultTypes: ["violations"],
        }).then(r => done({violations: r.violations.map(v => ({
          id: v.id, impact: v.impact,
          nodes: v.nodes.map(n => ({target: n.target.join(" "), summary: n.failureSummary})),
        }))}), e => done({error: String(e)}));
        """
    )
    if "error" in results:
        raise AssertionError(f"axe-core failed: {results['error']}")
    return [
        f"{v['impact']} {v['id']}: {n['target']} ({n['summary']})" for v in results["violations"] for n in v["nodes"]
    ]


def tab_order(driver: Any, limit: int = 40) -> list[str]:
    """The elements the Tab key reaches from the top of the page, in order, until focus leaves the page or comes
    round again; each named by its id, or its tag and text."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    # Focus the page itself, so that the first Tab goes to its first control (as after a fresh load).
    driver.execute_script(
        "const b = document.body; b.setAttribute('tabindex', '-1'); b.focus(); b.removeAttribute('tabindex');"
    )
    seen: list[str] = []
    for _ in range(limit):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        name = driver.execute_script(_NAME_OF_ACTIVE)
        if name is None or (seen and name == seen[0]):
            break
        seen.append(name)
    return seen


def focusable(driver: Any) -> list[str]:
    """Every visible element a keyboard should reach, named as `tab_order` names them."""
    names: list[str] = driver.execute_script(
        f"""
        return Array.from(document.querySelectorAll(arguments[0]))
          .filter(e => e.getClientRects().length > 0 && !e.closest("[hidden]"))
          .map({_NAME_FUNCTION});
        """,
        _FOCUSABLE,
    )
    return names


_NAME_FUNCTION = '(e => e.id ? "#" + e.id : e.tagName.toLowerCase() + ":" + (e.textContent || e.value || "").trim())'
_NAME_OF_ACTIVE = f"""
const e = document.activeElement;
if (!e || e === document.body || e === document.documentElement) return null;
return {_NAME_FUNCTION}(e);
"""
