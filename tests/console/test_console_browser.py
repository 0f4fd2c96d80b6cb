"""The console in a real browser: headless Chromium (selenium, /usr/bin/chromedriver) against the hub served on a
free port. Sign in, open the dashboard (also at 390 px wide), open the review queue and reject a dispute from its
form, follow the decision to its audit entry, verify that entry's inclusion proof with the page's own WebCrypto
code and see "verified" (and "failed" for altered bytes), sign out.

Without Chromium it skips, unless CI=true or HASHFED_REQUIRE_BROWSER=1, where it fails. Screenshots are written
under pytest's temporary folder; the test prints where.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from hub.feed import batches
from hub.governance import service as governance
from hub.identity import people, tenants
from hub.ops.jobs import integrate_audit_log
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor
from tests.browser import chromium_session
from tests.conftest import Database
from tests.partners.realhub import RealHub

EMAIL = "staff@example.org"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the module, reaching 127.0.0.1 only."""
    yield from chromium_session(tmp_path_factory.mktemp("chromium"), height=1000)


def integrate(hub: RealHub) -> None:
    """What the scheduler does every few seconds: integrate new audit entries and sign a checkpoint."""
    with hub.session() as s:
        keys = hub.keys(s)
    integrate_audit_log(hub.factory, datetime.now(UTC), keys=keys)


@pytest.fixture
def served(fresh_database: Database, tmp_path: Path) -> Iterator[tuple[str, RealHub]]:
    """A real hub with a sealed collection, a staff user and a signed audit checkpoint, on a free port."""
    hub = RealHub.start(fresh_database.app_url, fresh_database.engine, tmp_path / "var")
    cid = hub.create_collection("ncii-browser")
    hub.submit(cid, 3)
    hub.seal(cid)
    with hub.session() as s:
        staff_partner = tenants.create_partner(s, "governance-body", "governance", Actor.operator())
        people.create_user(s, staff_partner.id, EMAIL, PASSWORD, Actor.operator())
        acme = Actor(type="partner", partner=hub.partner_id, client=hub.client_id)
        ack = {"partner": hub.partner_id, "size": 1, "root": "AAAA"}
        at = datetime.now(UTC)
        entry = auditlog.record(s, acme, "feed.ack", f"collection/{cid}", ack, now=at)
        batches.record_ack(s, hub.partner_id, cid, 1, entry.seq, at)  # as the ack route does
        governance.open_dispute(s, partner_id=hub.partner_id, actor=acme,
                                body={"id": "d-1", "signal": hub.ids[cid][0], "reason": "false_positive"})
    integrate(hub)
    server = make_server("127.0.0.1", 0, hub.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", hub
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_sign_in_dashboard_verify_an_audit_entry_and_sign_out(
    served: tuple[str, RealHub], chromium: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, hub = served
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"console screenshots: {shots}")
    wait = WebDriverWait(chromium, 20)
    chromium.delete_all_cookies()
    chromium.set_window_size(1280, 1000)

    chromium.get(f"{base}/console/")
    wait.until(ec.title_contains("Sign in"))
    chromium.find_element(By.ID, "email").send_keys(EMAIL)
    chromium.find_element(By.ID, "password").send_keys(PASSWORD, Keys.ENTER)  # the keyboard submits the form
    heading = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "main h1")))
    assert heading.text == "Dashboard"
    assert "ncii-browser" in chromium.find_element(By.ID, "partner-sync").text
    assert chromium.find_element(By.CSS_SELECTOR, "svg.chart").is_displayed()
    chromium.save_screenshot(str(shots / "dashboard.png"))

    # Readable at 390 px: nothing makes the page itself scroll sideways (wide tables scroll in their own box).
    chromium.set_window_size(390, 900)
    overflow = chromium.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    chromium.save_screenshot(str(shots / "dashboard-390.png"))
    chromium.set_window_size(1280, 1000)

    # The review queue: open the dispute, reject it with a reason (keyboard only: tab order and Enter).
    chromium.find_element(By.LINK_TEXT, "Review queue").click()
    wait.until(ec.title_contains("Review queue"))
    chromium.find_element(By.CSS_SELECTOR, "#queue tbody a").click()
    wait.until(ec.title_contains("Dispute"))
    assert "dispute opened (false_positive)" in chromium.find_element(By.ID, "history").text
    chromium.find_element(By.ID, "action").send_keys("reject")
    chromium.find_element(By.ID, "reason").send_keys("the match is another image")
    chromium.find_element(By.ID, "decide").send_keys(Keys.ENTER)
    wait.until(ec.visibility_of_element_located((By.ID, "done")))
    assert chromium.find_element(By.ID, "dispute-status").text == "rejected"
    chromium.save_screenshot(str(shots / "dispute-decided.png"))

    integrate(hub)  # the scheduler's job: the decision's entry is now under a signed checkpoint
    chromium.find_element(By.CSS_SELECTOR, "#decisions a.audit-link").click()
    wait.until(ec.title_contains("Audit log"))
    size = int(chromium.find_element(By.ID, "checkpoint-size").text)
    assert size >= 1
    assert chromium.find_element(By.ID, "checkpoint-signature").text.startswith("valid")
    buttons = chromium.find_elements(By.CSS_SELECTOR, "button.verify")
    assert len(buttons) >= 2
    first, second = buttons[0], buttons[1]
    seq = first.get_attribute("data-seq")
    assert "dispute.decide" in chromium.find_element(By.ID, f"entry-{seq}").text  # the decision's own entry
    first.click()
    wait.until(ec.text_to_be_present_in_element((By.ID, f"result-{seq}"), "verified"))
    assert chromium.find_element(By.ID, f"result-{seq}").text == "verified"
    assert chromium.find_element(By.ID, "proof-result").text == f"Entry {seq}: verified"
    chromium.save_screenshot(str(shots / "audit-verified.png"))

    # The same check fails for bytes the log does not hold: change one byte of the next entry, press Enter on it.
    other = second.get_attribute("data-seq")
    chromium.execute_script(
        "var row = document.getElementById('entry-' + arguments[0]);"
        "var bytes = atob(row.dataset.entry); row.dataset.entry = btoa(bytes.slice(0, -1) + ' ');",
        other,
    )
    second.send_keys(Keys.ENTER)
    wait.until(ec.text_to_be_present_in_element((By.ID, f"result-{other}"), "failed"))
    chromium.save_screenshot(str(shots / "audit-failed.png"))

    chromium.find_element(By.ID, "sign-out").click()
    wait.until(ec.title_contains("Sign in"))
    chromium.get(f"{base}/console/audit")
    wait.until(ec.title_contains("Sign in"))
    chromium.save_screenshot(str(shots / "signed-out.png"))
    for name in ("dashboard.png", "dashboard-390.png", "dispute-decided.png", "audit-verified.png",
                 "audit-failed.png", "signed-out.png"):
        assert (shots / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), name

    # The pages need nothing their policy forbids: no blocked script, style or request in the browser's log.
    errors = [e["message"] for e in chromium.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
