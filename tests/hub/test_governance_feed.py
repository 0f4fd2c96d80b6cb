"""Staff decisions reach partners through the signed feed: an upheld dispute's remove arrives in a partner kit's
mirror and its matcher stops matching; a quarantine does the same until a release publishes the hash again."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.db import utcnow
from hub.identity import people
from hub.identity.models import Partner
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor
from hub.webhooks import service as webhooks
from partners.client.indexing import LocalIndex
from partners.client.mirror import Mirror
from partners.client.webhook import WEBHOOK_PATH, WebhookVerifier, make_server
from tests.hub import factories as f
from tests.hub.keykit import new_mirror, sync
from tests.partners.realhub import RealHub, pdq

PASSWORD = "correct horse battery staple 42"


def _staff_tokens(hub: RealHub) -> list[str]:
    with hub.session() as s:
        body = f.partner(s, kind="governance", name="oversight")
        tokens = []
        for name in ("ana", "bo"):
            user = people.create_user(s, body.id, f"{name}@example.org", PASSWORD, Actor.operator())
            tokens.append(people.create_personal_token(s, user, "t", ["governance"], utcnow())[1])
        return tokens


def _reporter_token(hub: RealHub) -> str:
    with hub.session() as s:
        acme = s.scalars(select(Partner).where(Partner.id == hub.partner_id)).one()
        return f.token(s, acme, ["reports:write"])


def _matches(mirror: Mirror, value: str) -> list[str]:
    index = LocalIndex(mirror)
    index.build()
    # Threshold 0: the feed's test values differ in a few bits only, and each test asks about one of them.
    return [m.signal_id for m in index.matcher.match("pdq", [value], threshold=0)[0]]


def test_uphold_quarantine_and_release_reach_a_partner_mirror(hub: RealHub, tmp_path: Path, mirrors: list[Mirror]):
    cid = hub.create_collection("ncii-main")
    hub.submit(cid, 60)  # one removal stays under the kit's mass-removal hold (5 %)
    hub.seal(cid)
    mirror = new_mirror(tmp_path, mirrors, "kit")
    assert sync(hub, mirror).ok
    upheld_id, quarantined_id = hub.ids[cid][0], hub.ids[cid][1]
    assert _matches(mirror, pdq(0)) == [upheld_id]

    client = hub.app.test_client()
    reporter, staff = _reporter_token(hub), _staff_tokens(hub)

    def dispute(key: str, signal_id: str) -> str:
        body = {"id": key, "signal": signal_id, "reason": "false_positive"}
        r = client.post("/v1/disputes", json=body, headers=f.auth(reporter))
        assert r.status_code == 201, r.get_json()
        return str(r.get_json()["id"])

    def decide(token: str, dispute_id: str, action: str) -> str:
        r = client.post(
            f"/v1/governance/disputes/{dispute_id}/decisions",
            json={"action": action, "reason": "reviewed against the source"},
            headers=f.auth(token),
        )
        assert r.status_code == 201, r.get_json()
        return str(r.get_json()["status"])

    # Uphold, confirmed by a second staff member: the remove reaches the mirror and the matcher stops matching.
    first = dispute("d-1", upheld_id)
    assert decide(staff[0], first, "uphold") == "awaiting_confirmation"
    hub.seal(cid)
    assert sync(hub, mirror).ok
    assert _matches(mirror, pdq(0)) == [upheld_id]  # proposed only: nothing changed
    assert decide(staff[1], first, "confirm") == "upheld"
    hub.seal(cid)
    assert sync(hub, mirror).ok
    assert _matches(mirror, pdq(0)) == []
    # The disputing partner sees the outcome.
    seen = client.get(f"/v1/disputes/{first}", headers=f.auth(reporter)).get_json()
    assert seen["status"] == "upheld" and [d["action"] for d in seen["decisions"]] == ["uphold", "confirm"]

    # Quarantine withholds the hash; a release publishes it again under a new id and it matches again.
    second = dispute("d-2", quarantined_id)
    assert decide(staff[0], second, "quarantine") == "quarantined"
    hub.seal(cid)
    assert sync(hub, mirror).ok
    assert _matches(mirror, pdq(1)) == []
    assert decide(staff[0], second, "release") == "released"
    hub.seal(cid)
    assert sync(hub, mirror).ok
    again = _matches(mirror, pdq(1))
    assert len(again) == 1 and again[0] != quarantined_id
    # The other signals were never touched.
    assert _matches(mirror, pdq(2)) == [hub.ids[cid][2]]


def test_a_decision_is_announced_to_the_parties_webhook_as_a_hint(hub: RealHub, tmp_path: Path, mirrors: list[Mirror]):
    cid = hub.create_collection("ncii-main")
    hub.submit(cid, 60)
    hub.seal(cid)
    mirror = new_mirror(tmp_path, mirrors, "kit")
    assert sync(hub, mirror).ok
    announced: list[str] = []
    server = make_server("127.0.0.1", 0, WebhookVerifier(mirror, hub.pin), lambda c: None, on_dispute=announced.append)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}{WEBHOOK_PATH}"
        with hub.session() as s:
            webhooks.register(s, hub.partner_id, url, Actor.operator(), utcnow(), allow=hub.settings.webhook_allow)
        webhooks.deliver_webhooks(hub.factory, utcnow(), settings=hub.settings)  # the current checkpoint
        client = hub.app.test_client()
        reporter, staff = _reporter_token(hub), _staff_tokens(hub)
        body = {"id": "d-1", "signal": hub.ids[cid][0], "reason": "not_in_scope"}
        dispute_id = client.post("/v1/disputes", json=body, headers=f.auth(reporter)).get_json()["id"]
        r = client.post(
            f"/v1/governance/disputes/{dispute_id}/decisions",
            json={"action": "reject", "reason": "in scope"},
            headers=f.auth(staff[0]),
        )
        assert r.status_code == 201
        done = webhooks.deliver_webhooks(hub.factory, utcnow(), settings=hub.settings)
        # acme opened the dispute and contributed the signal: one delivery, not two.
        assert (done.queued, done.delivered) == (0, 1)
        assert announced == [dispute_id]
        with hub.session() as s:
            last = json.loads(auditlog.entries(s, 0, None, limit=1000).entries[-1][1])
        assert last["action"] == "webhook.delivered" and last["subject"] == f"dispute/{dispute_id}"
        # A forged or malformed event is refused and announces nothing.
        for forged in (b'{"event": "dispute"}', b'{"event": "dispute", "dispute": "x", "status": "upheld"}', b"x"):
            req = urllib.request.Request(
                url, data=forged, headers={"Hashfed-Event": "dispute", "Content-Type": "application/json"}
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(req, timeout=5)
            assert refused.value.code == 400
        assert announced == [dispute_id]
    finally:
        server.shutdown()
        server.server_close()
