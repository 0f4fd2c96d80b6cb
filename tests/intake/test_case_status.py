"""A case's status at the hub (`GET /v1/cases/{ref}`) and on the intake's status page: received until its
hashes are sealed, then active with the seq that published them, and the number of other partners reading the
collection whose latest ack reaches that seq (`feed_acks`, written with each `feed.ack` audit entry); 404
for another partner's case and once withdrawn. The reference never reaches the audit log.
"""

from __future__ import annotations

import base64
import sqlite3
from contextlib import closing
from typing import Any
from urllib.parse import quote

from flask.testing import FlaskClient
from sqlalchemy import select

from hub.feed import collections, signals
from hub.feed.models import Access, FeedAck
from hub.identity import tenants
from hub.transparency.auditlog import Actor
from hub.transparency.models import AuditEntry
from tests.intake.conftest import Intake, IntakeWorld
from tests.intake.test_cases import _form, _hashes, _open
from tests.partners.realhub import HUB_NAME


def _token(client: FlaskClient, client_id: str, secret: str, scope: str) -> str:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    token: str = r.get_json()["access_token"]
    return token


class Reader:
    """A partner reading the collection that acknowledges what the hub's checkpoint says (as a kit does after
    applying the batches)."""

    def __init__(self, world: IntakeWorld, name: str, access: bool = True) -> None:
        self.world = world
        hub = world.hub
        with hub.session() as s:
            p = tenants.create_partner(s, name, "platform", Actor.operator())
            issued = tenants.create_client(
                s, p.id, "sync", ["feed:read", "hashes:write"], hub_secret=hub.keys(s).hub_secret,
                actor=Actor.operator(),
            )
            collections.set_access(
                s, world.collection, p.id, Access.READER, True, actor=Actor.operator(), hub_name=HUB_NAME,
                signer=hub.keys(s).signer("collection"),
            )
        self.partner_id = p.id
        self.client = hub.app.test_client()
        self.headers = {
            "Authorization": "Bearer "
            + _token(self.client, issued.client.client_id, issued.secret or "", "feed:read hashes:write")
        }

    def ack(self) -> int:
        r = self.client.get(f"/v1/collections/{self.world.collection}/checkpoint", headers=self.headers)
        assert r.status_code == 200, r.get_data(as_text=True)
        _, size, root = r.get_data(as_text=True).split("\n")[:3]
        r = self.client.post(
            f"/v1/collections/{self.world.collection}/ack",
            json={"size": int(size), "root": root},
            headers=self.headers,
        )
        assert r.status_code == 200, r.get_data(as_text=True)
        return int(size)

    def revoke(self) -> None:
        hub = self.world.hub
        with hub.session() as s:
            collections.set_access(
                s, self.world.collection, self.partner_id, Access.READER, False, actor=Actor.operator(),
                hub_name=HUB_NAME, signer=hub.keys(s).signer("collection"),
            )


def _case_ref(intake: Intake, number: str) -> str:
    with closing(sqlite3.connect(intake.settings.database_path)) as db:
        (ref,) = db.execute("SELECT case_ref FROM cases WHERE number = ?", (number,)).fetchone()
    return str(ref)


def _status(intake: Intake, ref: str) -> tuple[int, Any]:
    r = intake.transport.request("GET", f"/v1/cases/{quote(ref, safe='')}", max_bytes=1 << 16)
    return r.status, r.json() if r.status == 200 else None


def test_a_case_is_received_then_active_and_counts_the_platforms_that_acked(
    intake: Intake, world: IntakeWorld
) -> None:
    early = Reader(world, "early-platform")
    synced = Reader(world, "synced-platform")
    gone = Reader(world, "former-platform")
    _open(intake, _hashes())  # another case, so that the log has a batch before this one
    world.hub.seal(world.collection)
    early.ack()  # holds the log as it was before the case

    case = _open(intake, _hashes())
    ref = _case_ref(intake, case["case_number"])
    assert _status(intake, ref) == (
        200,
        {"status": "received", "hashes": 3, "pending": 3, "in_feed": 0, "published": [], "platforms": 0},
    )
    code, page = _form(intake, "/status", case["case_number"], case["pin"])
    assert code == 200 and 'data-status="received"' in page and "Received." in page

    world.hub.seal(world.collection)
    code, body = _status(intake, ref)
    assert code == 200 and body["status"] == "active" and body["in_feed"] == 3 and body["pending"] == 0
    [published] = body["published"]
    seq = published["seq"]
    assert published["collection"] == world.collection and seq >= 1
    assert body["platforms"] == 0  # nobody has acknowledged that batch yet
    code, page = _form(intake, "/status", case["case_number"], case["pin"])
    assert code == 200 and "Your images' fingerprints are active." in page and "No platform has" in page

    assert synced.ack() >= seq and gone.ack() >= seq
    with world.hub.session() as s:
        acks = {a.partner_id: a.size for a in s.scalars(select(FeedAck))}
    assert acks[synced.partner_id] >= seq and acks[early.partner_id] < seq
    gone.revoke()  # no longer reads the collection: not counted, whatever it acknowledged
    assert _status(intake, ref)[1]["platforms"] == 1
    code, page = _form(intake, "/status", case["case_number"], case["pin"])
    assert code == 200 and "1 platform has them." in page

    early.ack()
    assert _status(intake, ref)[1]["platforms"] == 2
    code, page = _form(intake, "/status", case["case_number"], case["pin"])
    assert "2 platforms have them." in page and 'id="case-platforms">2<' in page

    # Another partner asking for the intake's case learns nothing: the same 404 as a case never made.
    r = synced.client.get(f"/v1/cases/{quote(ref, safe='')}", headers=synced.headers)
    assert r.status_code == 404
    assert _status(intake, "intake-never-made")[0] == 404
    assert _status(intake, "x" * 201)[0] == 422

    # Withdrawn: the hub holds no claim any more (404), and the page says withdrawn.
    assert _form(intake, "/withdraw", case["case_number"], case["pin"])[0] == 200
    assert _status(intake, ref)[0] == 404
    code, page = _form(intake, "/status", case["case_number"], case["pin"])
    assert code == 200 and 'data-status="withdrawn"' in page

    # The reference never reaches the audit log in plain text, not even URL-encoded.
    with world.hub.session() as s:
        entries = b"\n".join(bytes(e) for e in s.scalars(select(AuditEntry.entry)))
    assert ref.encode() not in entries and quote(ref, safe="").encode() not in entries


def test_a_case_withdrawn_at_the_hub_shows_as_withdrawn(intake: Intake, world: IntakeWorld) -> None:
    case = _open(intake, _hashes())
    ref = _case_ref(intake, case["case_number"])
    # The hub's operator withdraws it for the intake (`hashfed cases withdraw`): the intake learns it on look-up.
    r = intake.transport.request("POST", f"/v1/cases/{quote(ref, safe='')}/withdraw", max_bytes=1 << 16)
    assert r.status == 200
    code, page = _form(intake, "/status", case["case_number"], case["pin"])
    assert code == 200 and 'data-status="withdrawn"' in page
    calls = len(intake.transport.paths)
    assert 'data-status="withdrawn"' in _form(intake, "/status", case["case_number"], case["pin"])[1]
    assert len(intake.transport.paths) == calls  # recorded: the hub is not asked again


def test_a_case_whose_hashes_staff_retired_is_removed(intake: Intake, world: IntakeWorld) -> None:
    hashes = _hashes()
    case = _open(intake, hashes)
    ref = _case_ref(intake, case["case_number"])
    world.hub.seal(world.collection)
    assert _status(intake, ref)[1]["status"] == "active"
    with world.hub.session() as s:
        for h in hashes[:2]:
            signals.retire_value(s, kind=h["type"], value=h["value"], actor=Actor.operator())
    # One hash is still in the feed: the case stays active, with two fewer in it.
    code, body = _status(intake, ref)
    assert (code, body["status"], body["hashes"], body["in_feed"]) == (200, "active", 3, 1)
    with world.hub.session() as s:
        signals.retire_value(s, kind=hashes[2]["type"], value=hashes[2]["value"], actor=Actor.operator())
    code, body = _status(intake, ref)
    assert (code, body["status"], body["in_feed"], body["pending"], body["platforms"]) == (200, "removed", 0, 0, 0)
    code, page = _form(intake, "/status", case["case_number"], case["pin"])
    assert code == 200 and 'data-status="removed"' in page and "not on the list at the moment" in page
