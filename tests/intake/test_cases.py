"""The intake over HTTP against a real hub: a case opened from hashes, looked up and withdrawn with its PIN,
wrong PINs refused and throttled, bad input refused with nothing stored."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub.feed.models import Signal
from partners.intake import cli
from partners.intake.app import CSP, check_hub
from partners.intake.errors import HubUnavailableError
from tests.intake.conftest import Intake, IntakeWorld, make_intake

_PAGES = ["/", "/status", "/static/pdq.js", "/static/intake.js", "/static/intake.css", "/static/exit.js"]


def _hashes(quality: int = 80) -> list[dict[str, Any]]:
    """One image's PDQ and SHA-256, and a video's MD5: fresh values per call."""
    return [
        {"type": "pdq", "value": secrets.token_hex(32), "quality": quality},
        {"type": "sha256", "value": hashlib.sha256(secrets.token_bytes(16)).hexdigest()},
        {"type": "md5", "value": secrets.token_hex(16)},
    ]


def _hub_signals(world: IntakeWorld, values: list[str]) -> dict[str, tuple[str, str | None]]:
    with world.hub.session() as s:
        rows = s.scalars(select(Signal).where(Signal.collection_id == world.collection, Signal.value.in_(values))).all()
        return {r.value: (r.status, r.removal_reason) for r in rows}


def _open(intake: Intake, hashes: list[dict[str, Any]]) -> dict[str, Any]:
    r = intake.app.test_client().post("/cases", json={"hashes": hashes})
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()


def _form(intake: Intake, path: str, number: str, pin: str, address: str = "192.0.2.1") -> tuple[int, str]:
    r = intake.app.test_client().post(
        path, data={"case_number": number, "pin": pin}, environ_base={"REMOTE_ADDR": address}
    )
    return r.status_code, r.get_data(as_text=True)


def test_a_case_is_submitted_looked_up_and_withdrawn(intake: Intake, world: IntakeWorld) -> None:
    hashes = _hashes()
    values = [h["value"] for h in hashes]
    case = _open(intake, hashes)
    assert re.fullmatch(r"[A-Z2-9]{5}-[A-Z2-9]{5}", case["case_number"])
    assert re.fullmatch(r"\d{4} \d{4}", case["pin"]) and case["hashes"] == 3
    assert {v: st for v, (st, _) in _hub_signals(world, values).items()} == dict.fromkeys(values, "active")

    # The intake keeps no hash and no PIN in clear: only the PIN's argon2 hash.
    stored = intake.settings.database_path.read_bytes()
    assert not any(v.encode() in stored for v in values)
    assert case["pin"].replace(" ", "").encode() not in stored and b"$argon2id$" in stored

    status, page = _form(intake, "/status", case["case_number"].lower().replace("-", " "), case["pin"])
    assert status == 200 and "Received" in page and case["case_number"] in page

    status, page = _form(intake, "/withdraw", case["case_number"], case["pin"].replace(" ", ""))
    assert status == 200 and "withdrawn" in page
    assert _hub_signals(world, values) == dict.fromkeys(values, ("retracted", "withdrawn"))
    assert intake.transport.paths[-1].startswith("POST /v1/cases/intake-")

    status, page = _form(intake, "/status", case["case_number"], case["pin"])
    assert status == 200 and 'data-status="withdrawn"' in page
    # Withdrawing again is harmless and does not call the hub.
    calls = len(intake.transport.paths)
    assert _form(intake, "/withdraw", case["case_number"], case["pin"])[0] == 200
    assert len(intake.transport.paths) == calls


def test_a_hash_held_by_another_case_stays_after_a_withdrawal(intake: Intake, world: IntakeWorld) -> None:
    shared = _hashes()[:1]
    first, second = _open(intake, shared), _open(intake, shared)
    assert first["case_number"] != second["case_number"]
    assert _form(intake, "/withdraw", first["case_number"], first["pin"])[0] == 200
    assert _hub_signals(world, [shared[0]["value"]]) == {shared[0]["value"]: ("active", None)}


def test_wrong_pins_are_refused_then_the_case_locks(intake: Intake, world: IntakeWorld) -> None:
    case = _open(intake, _hashes())
    wrong = "0000 0000" if case["pin"] != "0000 0000" else "1111 1111"
    for _ in range(5):
        status, page = _form(intake, "/status", case["case_number"], wrong)
        assert status == 404 and "could not find a case" in page
    # Locked: even the right PIN is refused, and withdrawal too, until 15 minutes have passed.
    status, page = _form(intake, "/status", case["case_number"], case["pin"])
    assert status == 429 and "Too many tries" in page
    assert _form(intake, "/withdraw", case["case_number"], case["pin"])[0] == 429
    intake.clock.now += 14 * 60
    assert _form(intake, "/status", case["case_number"], case["pin"])[0] == 429
    intake.clock.now += 61
    assert _form(intake, "/status", case["case_number"], case["pin"])[0] == 200
    # A right PIN clears the count: four more wrong tries do not lock it.
    for _ in range(4):
        assert _form(intake, "/status", case["case_number"], wrong)[0] == 404
    assert _form(intake, "/status", case["case_number"], case["pin"])[0] == 200


def test_an_unknown_case_number_looks_like_a_wrong_pin(intake: Intake) -> None:
    status, page = _form(intake, "/status", "ABCDE-FGHJK", "1234 5678")
    assert status == 404 and "could not find a case" in page


def test_look_ups_are_limited_per_address(intake: Intake) -> None:
    for i in range(intake.settings.address_lookups):
        assert _form(intake, "/status", f"ABCDE-{i:05d}", "1234 5678", "198.51.100.7")[0] == 404
    assert _form(intake, "/status", "ABCDE-FGHJK", "1234 5678", "198.51.100.7")[0] == 429
    assert _form(intake, "/status", "ABCDE-FGHJK", "1234 5678", "198.51.100.8")[0] == 404
    intake.clock.now += intake.settings.address_window_s
    assert _form(intake, "/status", "ABCDE-FGHJK", "1234 5678", "198.51.100.7")[0] == 404


@pytest.mark.parametrize(
    "body",
    [
        {"hashes": []},
        {"hashes": [{"type": "pdq", "value": "ab" * 32}]},
        {"hashes": [{"type": "pdq", "value": "AB" * 32, "quality": 90}]},
        {"hashes": [{"type": "sha256", "value": "ab" * 32, "quality": 90}]},
        {"hashes": [{"type": "md5", "value": "ab" * 32}]},
        {"hashes": [{"type": "image", "value": "ab" * 32}]},
        {"hashes": [{"type": "sha256", "value": "ab" * 32, "name": "me.jpg"}]},
        {"hashes": [{"type": "pdq", "value": "ab" * 32, "quality": 10}]},
        {"hashes": "ab"},
    ],
    ids=[
        "empty",
        "pdq without quality",
        "upper case",
        "quality on sha256",
        "md5 too long",
        "unknown type",
        "extra field",
        "only a low-quality pdq",
        "not a list",
    ],
)
def test_bad_hashes_are_refused_and_nothing_is_stored(intake: Intake, body: dict[str, Any]) -> None:
    calls = len(intake.transport.paths)
    r = intake.app.test_client().post("/cases", json=body)
    assert r.status_code == 422 and r.get_json()["message"]
    assert len(intake.transport.paths) == calls
    assert "ncii" not in str(intake.transport.paths[calls:])


def test_a_body_that_is_not_json_hashes_is_refused(intake: Intake) -> None:
    client = intake.app.test_client()
    assert client.post("/cases", data=b"\xff\xd8\xff\xe0 an image", content_type="image/jpeg").status_code == 400
    assert client.post("/cases", json={"hashes": _hashes(), "name": "x"}).status_code == 400
    assert client.post("/cases", data=b"x" * 70_000, content_type="application/json").status_code == 413


def test_a_low_quality_pdq_is_not_sent_but_the_sha256_is(intake: Intake, world: IntakeWorld) -> None:
    hashes = _hashes(quality=20)
    case = _open(intake, hashes)
    assert case["hashes"] == 2
    assert set(_hub_signals(world, [h["value"] for h in hashes])) == {hashes[1]["value"], hashes[2]["value"]}


def test_an_unreachable_hub_stores_nothing(intake: Intake) -> None:
    intake.transport.cut = True
    r = intake.app.test_client().post("/cases", json={"hashes": _hashes()})
    assert r.status_code == 502 and "nothing was sent" in r.get_json()["message"]
    assert b"argon2" not in intake.settings.database_path.read_bytes()


def test_every_page_has_the_strict_policy_and_no_cookie(intake: Intake) -> None:
    client = intake.app.test_client()
    for path in _PAGES:
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["Content-Security-Policy"] == CSP
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "Set-Cookie" not in r.headers
    page = client.get("/").get_data(as_text=True)
    assert "<script>" not in page and "style=" not in page and "http" not in page.split("quick-exit")[0]
    # Every input has a label.
    ids = re.findall(r'<input id="([^"]+)"', page + client.get("/status").get_data(as_text=True))
    labels = re.findall(r'<label for="([^"]+)"', page + client.get("/status").get_data(as_text=True))
    assert ids and set(ids) <= set(labels)


def test_the_hub_key_set_is_checked_against_the_pin(intake: Intake, world: IntakeWorld) -> None:
    assert check_hub(intake.app, intake.settings) >= 1
    hub_client = intake.app.extensions["hashfed_intake"].hub
    with pytest.raises(HubUnavailableError, match="pin"):
        hub_client.check_keys("0" * 64, datetime.now(UTC))


def test_behind_a_proxy_look_ups_are_limited_per_forwarded_address(world: IntakeWorld, tmp_path: Path) -> None:
    intake = make_intake(world, tmp_path, proxy_hops=1, address_lookups=5)
    client = intake.app.test_client()

    def look_up(forwarded: str) -> int:
        return client.post(
            "/status",
            data={"case_number": "ABCDE-FGHJK", "pin": "1234 5678"},
            headers={"X-Forwarded-For": forwarded},
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        ).status_code

    for _ in range(intake.settings.address_lookups):
        assert look_up("203.0.113.5") == 404
    assert look_up("203.0.113.5") == 429
    assert look_up("203.0.113.6") == 404


def test_every_page_has_a_quick_exit(intake: Intake) -> None:
    client = intake.app.test_client()
    for path in ("/", "/status"):
        page = client.get(path).get_data(as_text=True)
        assert f'id="quick-exit" href="{intake.settings.exit_url}"' in page and "/static/exit.js" in page


def test_the_command_refuses_to_start_without_its_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("HASHFED_INTAKE_HUB_URL", "HASHFED_INTAKE_CLIENT_ID", "HASHFED_INTAKE_COLLECTION"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["check"]) == 2
    assert "HASHFED_INTAKE_HUB_URL" in capsys.readouterr().err


def test_posts_from_another_site_are_refused(intake: Intake) -> None:
    client = intake.app.test_client()
    form = {"case_number": "ABCDE-FGHJK", "pin": "1234 5678"}
    assert client.post("/status", data=form, headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post("/cases", json={"hashes": _hashes()}, headers={"Origin": "null"}).status_code == 403
    assert client.post("/status", data=form, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.post("/status", data=form, headers={"Origin": "http://localhost"}).status_code == 404
    assert client.post("/status", data=form, headers={"Sec-Fetch-Site": "same-origin"}).status_code == 404
