"""The intake page in headless Chromium: three images chosen, hashed on the device, confirmed; a case number
and PIN shown. Every request the browser makes is recorded (DevTools performance log): none carries file
bytes, only the JSON of hashes, and the hub is not called until the person confirms. Then the hub seals, a
partner kit syncs its mirror and `hashfed-partner match` finds the image; the person withdraws the case with
the PIN, and after the next seal and sync the mirror holds the hashes no more.
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
from tests.intake.browser import network_requests
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


def test_three_images_hashed_on_the_device_become_a_case(
    browser: Any, served: tuple[str, Intake], world: IntakeWorld, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, intake = served
    files = []
    for i, (w, h) in enumerate([(640, 480), (300, 500), (1200, 900)]):
        path = tmp_path / f"photo-{i}.png"
        path.write_bytes(_photo(i, w, h))
        files.append(path)
    expected = [hash_bytes(p.read_bytes()) for p in files]

    browser.get("about:blank")
    browser.get_log("performance")
    browser.get(base + "/")
    wait = WebDriverWait(browser, 60)
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
    # Usable on a phone: nothing wider than the screen.
    assert browser.execute_script("return window.innerWidth") == PHONE_WIDTH
    assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE_WIDTH

    intake.transport.cut = False
    browser.find_element(By.ID, "confirm").click()
    wait.until(ec.visibility_of_element_located((By.ID, "done")))
    number = browser.find_element(By.ID, "case-number").text
    pin = browser.find_element(By.ID, "case-pin").text
    assert len(number) == 11 and len(pin) == 9
    assert browser.switch_to.active_element.get_attribute("id") == "done"  # focus moves to the result

    requests = network_requests(browser)
    origin = urlsplit(base)
    assert all(
        (urlsplit(r["url"]).scheme, urlsplit(r["url"]).netloc) == (origin.scheme, origin.netloc) for r in requests
    )
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
    images = [p.read_bytes() for p in files]
    for r in requests:
        assert "multipart" not in json.dumps(r["headers"]).lower()
        assert not any(img[100:132].hex() in r["body"] or img[100:132].decode("latin-1") in r["body"] for img in images)
    assert [p.split("?")[0] for p in intake.transport.paths] == [f"POST /v1/collections/{world.collection}/signals"]
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []

    # The case number and PIN work on the status page, in the same browser.
    browser.get(base + "/status")
    browser.find_element(By.ID, "case_number").send_keys(number)
    browser.find_element(By.ID, "pin").send_keys(pin)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    status = wait.until(ec.visibility_of_element_located((By.ID, "case-status")))
    assert status.text.startswith("Received")
    assert browser.get_cookies() == []

    # The hub seals; a platform's kit syncs and matches one of the images (and not a picture never submitted).
    home = _kit_home(world, tmp_path / "kit")
    world.hub.seal(world.collection)
    _sync(world, home)
    assert _pdq_matches(home, files[1]) == [expected[1].pdq]
    other = tmp_path / "other.png"
    other.write_bytes(_photo(99, 640, 480))
    assert _pdq_matches(home, other) == []

    # The person withdraws with the PIN; the removal reaches the mirror at the next seal and sync.
    browser.get(base + "/status")
    browser.find_element(By.ID, "case_number").send_keys(number)
    browser.find_element(By.ID, "pin").send_keys(pin)
    browser.find_element(By.CSS_SELECTOR, "button.secondary").click()
    status = wait.until(ec.visibility_of_element_located((By.ID, "case-status")))
    assert status.text == "Withdrawn"
    world.hub.seal(world.collection)
    _sync(world, home)
    assert _pdq_matches(home, files[1]) == []


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
