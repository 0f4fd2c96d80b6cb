"""The console tests' world: a sealed collection with reports and an ack, staff of a governance body and of a
regulator, and an audit log integrated under a signed checkpoint. Time stands still at NOW."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from hub.feed import batches
from hub.governance import service as governance
from hub.identity import people
from hub.identity.models import User, new_id
from hub.ops.jobs import integrate_audit_log
from hub.reports import service as reports
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor
from tests.hub import factories as f
from tests.hub import reportkit

# A Wednesday: ISO week 2026-W10 runs from Monday 2026-03-02.
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
GOV_EMAIL = "gov@example.org"
GOV2_EMAIL = "gov2@example.org"
REG_EMAIL = "reg@example.org"


@dataclass
class World:
    w: reportkit.World
    gov_partner: str
    reg_partner: str
    ack_seq: int
    dispute_id: str


def report(session: Session, settings, w: reportkit.World, who, rid: str, i: int, matched: datetime,
           outcome: str) -> None:
    extra = {} if outcome == "pending_review" else {"actioned_at": reportkit.t(matched + timedelta(minutes=5))}
    body = reportkit.item(w, rid, i, matched_at=reportkit.t(matched), outcome=outcome, **extra)
    reports.submit(session, partner_id=who.id, items=[body], actor=Actor(type="partner", partner=who.id),
                   hub_secret=f.hub_secret(settings), flag_threshold=3, now=NOW)


def build(session: Session, session_factory, settings) -> World:
    w = reportkit.build(session, settings)
    report(session, settings, w, w.a, "r-this-week", 0, NOW - timedelta(hours=1), "pending_review")
    report(session, settings, w, w.b, "r-last-week", 1, NOW - timedelta(days=7), "removed")
    report(session, settings, w, w.a, "r-last-week-2", 2, NOW - timedelta(days=8), "removed")
    ack = auditlog.record(session, Actor(type="partner", partner=w.a.id, client="kit"), "feed.ack",
                          f"collection/{w.c.id}", {"partner": w.a.id, "size": 2, "root": "AAAA"}, now=NOW)
    batches.record_ack(session, w.a.id, w.c.id, 2, ack.seq, NOW)  # as the ack route does, in its transaction
    dispute, _ = governance.open_dispute(
        session, partner_id=w.b.id, actor=Actor(type="partner", partner=w.b.id), now=NOW - timedelta(days=2),
        body={"id": "d-1", "signal": w.signals[0], "reason": "false_positive", "note": "a cat, not the image"},
    )
    gov = f.partner(session, kind="governance", name="governance-body")
    reg = f.partner(session, kind="regulator", name="the-regulator")
    first = people.create_user(session, gov.id, GOV_EMAIL, PASSWORD, Actor.operator())
    # The others share the first one's real Argon2id hash: the password check runs once per user instead of
    # the strength check and hashing three times per test.
    for partner_id, email in ((gov.id, GOV2_EMAIL), (reg.id, REG_EMAIL)):
        session.add(User(id=new_id(), partner_id=partner_id, email=email, password_hash=first.password_hash,
                         status="active", created_at=NOW))
    session.commit()
    integrate_audit_log(session_factory, NOW, keys=w.keys)
    f.as_system(session)
    return World(w, gov.id, reg.id, ack.seq, dispute.id)


@pytest.fixture
def world(session, session_factory, settings, time_machine) -> World:
    time_machine.move_to(NOW, tick=False)
    return build(session, session_factory, settings)


def sign_in(client: FlaskClient, email: str) -> None:
    """Sign in through the JSON login (hub/identity/routes.py), as the docs' scripts do."""
    r = client.post("/console/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.get_data(as_text=True)


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)
