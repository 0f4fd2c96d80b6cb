"""The intake's whole story in headless Chromium at 390 pixels: three images chosen, hashed on the device
with the hub cut off, confirmed; a case number and PIN shown once. The case is received, then active once the
hub seals, and "1 platform has them" once a partner kit has synced and acknowledged; `hashfed-partner match`
finds one image. A wrong PIN is refused and, after five, the case number locks. The person withdraws the case
with the PIN, and after the next seal and sync the mirror holds the hashes no more; the page says withdrawn.

Every request the browser makes is recorded (DevTools performance log): none carries file bytes. Every page
and state is audited with axe-core (vendored, tests/intake/vendor/) and walked with the Tab key: no violation
of any impact, the quick-exit link first, every control reached, nothing wider than the phone.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from werkzeug.serving import make_server

from partners.cli.main import main as kit_main
from partners.client import config as cfg
from partners.client.mirror import Mirror
from partners.client.sync import Syncer
from partners.client.verify import Policy
from partners.matching.hashing import hash_bytes
from tests.browser import chromium_session
from tests.intake.browser import axe_violations, focusable, network_requests, tab_order
from tests.intake.conftest import Intake, IntakeWorld, make_intake
from tests.partners.realhub import FlaskTransport

PHONE_WIDTH = 390  # CSS pixels of a small phone


def _photo(seed: int, width: int, height: int) -> bytes:
    """A photo-like PNG: smooth shapes (random colours upscaled) and grain. Lossless, so Chromium decodes the
    same pixels as Pillow."""
    rng = np.random.default_rng(seed)
    shapes = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    grain = np.asarray(shapes, dtype=np.float64) + rng.normal(0, 12, (height, width, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(grain, 0, 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    for driver in chromium_session(tmp_path_factory.mktemp("chromium")):
        # A phone's viewport (headless windows do not shrink below 500 pixels).
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": PHONE_WIDTH, "height": 844, "deviceScaleFactor": 1, "mobile": True},
        )
        yield driver


@pytest.fixture
def served(world: IntakeWorld, tmp_path: Path) -> Iterator[tuple[str, Intake]]:
    intake = make_intake(world, tmp_path / "intake")
    server = make_server("127.0.0.1", 0, intake.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", intake
    finally:
        server.shutdown()
        thread.join(timeout=5)


def _audit_page(browser: Any, what: str, first: str = "#quick-exit") -> list[str]:
    """axe-core finds no violation of any impact; the page fits a phone; Tab reaches the quick exit first and
    then every control. The tab order, for the caller to check further."""
    violations = axe_violations(browser)
    assert violations == [], (what, violations)
    assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE_WIDTH, what
    order = tab_order(browser)
    assert order[:2] == [first, "a:Skip to the main content"], (what, order)
    assert sorted(set(order)) == sorted(set(focusable(browser))), (what, order, focusable(browser))
    return order


def _look_up(browser: Any, base: str, number: str, pin: str, button: str = "button[type=submit]") -> str:
    """Type the case number and PIN on the status page (by keyboard) and press a button; the page's text."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(base + "/status")
    browser.find_element(By.ID, "case_number").send_keys(number)
    browser.find_element(By.ID, "pin").send_keys(pin)
    browser.execute_script("window.formPage = true;")
    browser.find_element(By.CSS_SELECTOR, button).click()
    # The answer is a new document, loaded to the end. Asked by script, not through an element of the old page:
    # Chromium's driver may report that element's page going away as an error of its own mid-navigation.
    WebDriverWait(browser, 30, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return !window.formPage && document.readyState === 'complete'")
    )
    text: str = browser.find_element(By.TAG_NAME, "main").text
    return text


def test_three_images_hashed_on_the_device_become_a_case(
    browser: Any, served: tuple[str, Intake], world: IntakeWorld, tmp_path: Path
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, intake = served
    files = []
    for i, (w, h) in enumerate([(640, 480), (300, 500), (1200, 900)]):
        path = tmp_path / f"photo-{i}.png"
        path.write_bytes(_photo(i, w, h))
        files.append(path)
    expected = [hash_bytes(p.read_bytes()) for p in files]
    requests: list[dict[str, Any]] = []

    browser.get("about:blank")
    browser.get_log("performance")
    browser.get(base + "/")
    wait = WebDriverWait(browser, 60)
    assert browser.execute_script("return window.innerWidth") == PHONE_WIDTH
    # The audit sees a real fault: an input without a label, added and taken away again.
    browser.execute_script("const i = document.createElement('input'); i.id = 'unlabelled'; document.body.append(i);")
    assert any("label: #unlabelled" in v for v in axe_violations(browser)), axe_violations(browser)
    browser.execute_script("document.getElementById('unlabelled').remove();")
    start_order = _audit_page(browser, "start page")
    assert "#files" in start_order
    # By keyboard: the skip link (second stop) takes focus past the header to the main content.
    tab_order(browser, limit=2)
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert browser.switch_to.active_element.get_attribute("id") == "main"
    # The hub is unreachable while the person chooses and reviews: hashing needs no network.
    intake.transport.cut = True
    browser.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in files))
    wait.until(ec.visibility_of_element_located((By.ID, "review")))
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#hash-rows tr")]
    assert "6 codes for 3 files will be sent" in browser.find_element(By.ID, "summary").text, (rows, expected)
    for i, result in enumerate(expected):
        assert result.pdq and (result.quality or 0) >= 50
        # The page shows the start of each hash: the PDQ computed from the canvas equals Python's.
        assert any(r.startswith(f"{i + 1} ") and "PDQ" in r and result.pdq[:8] in r for r in rows), rows
        assert any(r.startswith(f"{i + 1} ") and "SHA-256" in r and (result.sha256 or "")[:8] in r for r in rows)
    assert intake.transport.paths == []
    review_order = _audit_page(browser, "hashed, waiting for confirmation")
    assert review_order.index("#files") < review_order.index("#confirm")

    intake.transport.cut = False
    browser.find_element(By.ID, "confirm").click()
    wait.until(ec.visibility_of_element_located((By.ID, "done")))
    number = browser.find_element(By.ID, "case-number").text
    pin = browser.find_element(By.ID, "case-pin").text
    assert len(number) == 11 and len(pin) == 9
    assert browser.switch_to.active_element.get_attribute("id") == "done"  # focus moves to the result
    _audit_page(browser, "case number and PIN")

    requests += network_requests(browser)
    with_body = [r for r in requests if r["method"] != "GET" or r["has_body"]]
    assert [(r["method"], urlsplit(r["url"]).path) for r in with_body] == [("POST", "/cases")]
    sent = json.loads(with_body[0]["body"])
    assert sent == {
        "hashes": [
            h
            for e in expected
            for h in (
                {"type": "pdq", "value": e.pdq, "quality": e.quality},
                {"type": "sha256", "value": e.sha256},
            )
        ]
    }
    assert [p.split("?")[0] for p in intake.transport.paths] == [f"POST /v1/collections/{world.collection}/signals"]

    # The status form, then the case as received: the hub has not sealed yet.
    browser.get(base + "/status")
    _audit_page(browser, "status form")
    page = _look_up(browser, base, number, pin)
    assert "Received." in page and number in page
    _audit_page(browser, "received case")
    assert browser.get_cookies() == []

    # The hub seals; a platform's kit syncs (and acknowledges) and matches one of the images, not another one.
    home = _kit_home(world, tmp_path / "kit")
    world.hub.seal(world.collection)
    page = _look_up(browser, base, number, pin)
    assert "Your images' fingerprints are active. No platform has picked them up yet." in page
    _sync(world, home)
    page = _look_up(browser, base, number, pin)
    assert "Your images' fingerprints are active. 1 platform has them." in page, page
    _audit_page(browser, "active case")
    assert _pdq_matches(home, files[1]) == [expected[1].pdq]
    other = tmp_path / "other.png"
    other.write_bytes(_photo(99, 640, 480))
    assert _pdq_matches(home, other) == []

    # A wrong PIN is refused, five times; then the case number locks, even for the right PIN.
    wrong = "0000 0000" if pin != "0000 0000" else "1111 1111"
    for _ in range(5):
        assert "We could not find a case with that number and PIN." in _look_up(browser, base, number, wrong)
    _audit_page(browser, "wrong PIN")
    assert "Too many tries. Please wait 15 minutes." in _look_up(browser, base, number, pin)
    assert "Too many tries" in _look_up(browser, base, number, pin, "button.secondary")
    intake.clock.now += 15 * 60 + 1

    # The person withdraws with the PIN; the removal reaches the mirror at the next seal and sync.
    page = _look_up(browser, base, number, pin, "button.secondary")
    assert "Your case is withdrawn." in page and "Withdrawn." in page
    _audit_page(browser, "withdrawn case")
    world.hub.seal(world.collection)
    _sync(world, home)
    assert _pdq_matches(home, files[1]) == []
    assert "Withdrawn." in _look_up(browser, base, number, pin)

    # Every request the browser made went to the intake, and none carried a file's bytes.
    requests += network_requests(browser)
    origin = urlsplit(base)
    assert all(
        (urlsplit(r["url"]).scheme, urlsplit(r["url"]).netloc) == (origin.scheme, origin.netloc) for r in requests
    )
    posted = [(r["method"], urlsplit(r["url"]).path) for r in requests if r["method"] != "GET" or r["has_body"]]
    assert set(posted) == {("POST", "/cases"), ("POST", "/status"), ("POST", "/withdraw")}
    images = [p.read_bytes() for p in files]
    for r in requests:
        assert "multipart" not in json.dumps(r["headers"]).lower()
        assert not any(img[100:132].hex() in r["body"] or img[100:132].decode("latin-1") in r["body"] for img in images)
        assert len(r["body"]) < 4096, r["url"]
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert all("/status" in e or "/withdraw" in e for e in errors), errors  # the 404/429 answers only


def _kit_home(world: IntakeWorld, home: Path) -> Path:
    """A platform's kit home (the hub's reader partner) whose mirror the tests sync."""
    secret = home / "secret"
    home.mkdir(parents=True)
    secret.write_text(world.hub.secret)
    secret.chmod(0o600)
    config = cfg.PartnerConfig(
        hub_url="http://127.0.0.1:8000",
        client_id=world.hub.client_id,
        keyset_sha256=world.hub.pin,
        secret_path=str(secret),
    )
    cfg.save(home, config)
    return home


def _sync(world: IntakeWorld, home: Path) -> None:
    mirror = Mirror.open(cfg.load(home).mirror(home))
    try:
        # The whole case leaves at once: allow a batch removing every signal of this small collection.
        report = Syncer(FlaskTransport(world.hub), mirror, world.hub.pin, Policy(max_removal_share=1.0)).sync()
        assert report.ok, report.errors()
    finally:
        mirror.close()


def _pdq_matches(home: Path, image: Path) -> list[str]:
    r = CliRunner().invoke(kit_main, ["--home", str(home), "match", "--json", str(image)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    mirror = Mirror.open(cfg.load(home).mirror(home))
    try:
        values = {s.signal_id: s.value for s in mirror.active_signals()}
    finally:
        mirror.close()
    return [values.get(m["signal"], m["signal"]) for row in rows if row["type"] == "pdq" for m in row["matches"]]
