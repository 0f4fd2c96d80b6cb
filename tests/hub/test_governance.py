"""Governance over the API: cases and their claims, disputes, the staff queue and decisions, four eyes."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from hub.db import utcnow
from hub.feed import collections, signals
from hub.feed.models import Access, PendingChange, RetiredValue, Signal, SignalClaim
from hub.governance import service as governance
from hub.governance.models import Decision, Dispute
from hub.identity import people
from hub.identity.models import Partner, User
from hub.reports.models import SignalFlag
from hub.transparency.auditlog import Actor
from hub.transparency.models import AuditEntry
from tests.hub import factories as f
from tests.hub import feedkit as kit
from tests.hub import reportkit as rk

PASSWORD = "correct horse battery staple 42"


@dataclass
class Gov:
    w: rk.World
    staff: list[str]  # personal tokens of two governance staff users
    users: list[User]
    machine: str  # a governance partner's machine token with the governance scope


@pytest.fixture
def g(session, settings) -> Gov:
    w = rk.build(session, settings)
    body = f.partner(session, kind="governance", name="oversight")
    users, tokens = [], []
    for name in ("ana", "bo"):
        user = people.create_user(session, body.id, f"{name}@example.org", PASSWORD, Actor.operator())
        _, token = people.create_personal_token(session, user, "t", ["governance"], utcnow())
        users.append(user)
        tokens.append(token)
    return Gov(w, tokens, users, f.token(session, body, ["governance"]))


def dispute_body(w: rk.World, key: str = "d-1", signal: int = 0, **extra) -> dict:
    return {"id": key, "signal": w.signals[signal], "reason": "false_positive", "note": "a cartoon", **extra}


def open_dispute(client, token: str, body: dict):
    return client.post("/v1/disputes", json=body, headers=f.auth(token))


def counts(session) -> tuple[int, ...]:
    f.as_system(session)
    return tuple(
        session.scalar(select(func.count()).select_from(t)) for t in (Dispute, Decision, AuditEntry, PendingChange)
    )


def entry(session, seq: int) -> dict:
    f.as_system(session)
    return json.loads(session.scalar(select(AuditEntry.entry).where(AuditEntry.seq == seq)))


def decide(client, token: str, dispute_id: str, action: str, reason: str = "checked against the source"):
    return client.post(
        f"/v1/governance/disputes/{dispute_id}/decisions",
        json={"action": action, "reason": reason},
        headers=f.auth(token),
    )


# --- disputes --------------------------------------------------------------------------------------------


def test_a_dispute_is_opened_once_under_its_id_and_audited_without_its_note(client, session, g):
    w = g.w
    r = open_dispute(client, w.token_a, dispute_body(w))
    assert r.status_code == 201, r.json
    assert r.json["status"] == "open" and r.json["signal"] == w.signals[0] and r.json["decisions"] == []
    e = entry(session, r.json["audit_seq"])
    assert e["action"] == "dispute.open" and e["details"]["reason"] == "false_positive"
    assert "a cartoon" not in json.dumps(e) and "note_sha256" in e["details"]

    before = counts(session)
    again = open_dispute(client, w.token_a, dispute_body(w))
    assert again.status_code == 200 and again.json["id"] == r.json["id"]
    other = open_dispute(client, w.token_a, dispute_body(w, note="another note"))
    assert other.status_code == 422 and "id" in other.json["errors"]
    second = open_dispute(client, w.token_a, dispute_body(w, key="d-2"))
    assert second.status_code == 409
    assert counts(session) == before


def test_a_signal_in_an_unreadable_collection_is_the_same_404_as_an_unknown_one(client, session, g):
    w = g.w
    before = counts(session)
    hidden = open_dispute(client, w.token_a, {**dispute_body(w), "signal": w.other_signal})
    unknown = open_dispute(client, w.token_a, {**dispute_body(w), "signal": "0" * 36})
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json == unknown.json
    bad = open_dispute(client, w.token_a, dispute_body(w, reason="dislike"))
    assert bad.status_code == 422
    assert counts(session) == before


def test_the_contributor_sees_and_answers_once_and_others_see_nothing(client, session, g):
    w = g.w
    opened = open_dispute(client, w.token_a, dispute_body(w)).json
    owner_token = f.token(session, w.owner, ["reports:write"])
    mine = client.get("/v1/disputes?mine=contributed", headers=f.auth(owner_token)).json["disputes"]
    assert [d["id"] for d in mine] == [opened["id"]]
    assert client.get("/v1/disputes?mine=contributed", headers=f.auth(w.token_b)).json["disputes"] == []
    assert client.get(f"/v1/disputes/{opened['id']}", headers=f.auth(w.token_b)).status_code == 404
    # The disputing partner may not answer its own dispute; the contributor answers once.
    path = f"/v1/disputes/{opened['id']}/answer"
    assert client.post(path, json={"answer": "no"}, headers=f.auth(w.token_a)).status_code == 403
    first = client.post(path, json={"answer": "the source confirmed it"}, headers=f.auth(owner_token))
    assert first.status_code == 200 and first.json["answer"] == "the source confirmed it"
    assert client.post(path, json={"answer": "again"}, headers=f.auth(owner_token)).status_code == 409


def test_staff_only_machines_and_platforms_are_refused(client, session, g):
    w = g.w
    opened = open_dispute(client, w.token_a, dispute_body(w)).json
    assert client.get("/v1/governance/queue", headers=f.auth(g.machine)).status_code == 403
    assert client.get("/v1/governance/queue", headers=f.auth(w.token_a)).status_code == 403
    queue = client.get("/v1/governance/queue", headers=f.auth(g.staff[0]))
    assert queue.status_code == 200
    row = queue.json["queue"][0]
    assert row["dispute"]["id"] == opened["id"] and row["signal_type"] == "pdq"
    assert row["signal_prefix"] == w.values[0][:8] and w.values[0] not in queue.get_data(as_text=True)


def test_reject_needs_a_reason_and_reaches_both_parties(client, session, g):
    w = g.w
    opened = open_dispute(client, w.token_a, dispute_body(w)).json
    before = counts(session)
    assert decide(client, g.staff[0], opened["id"], "reject", reason="").status_code == 422
    assert decide(client, g.staff[0], opened["id"], "release").status_code == 409
    assert counts(session) == before
    r = decide(client, g.staff[0], opened["id"], "reject")
    assert r.status_code == 201, r.json
    seen = client.get(f"/v1/disputes/{opened['id']}", headers=f.auth(w.token_a)).json
    assert seen["status"] == "rejected" and [d["action"] for d in seen["decisions"]] == ["reject"]
    e = entry(session, seen["decisions"][0]["audit_seq"])
    assert e["actor"]["user"] == g.users[0].id and e["action"] == "dispute.decide" and "reason_sha256" in e["details"]
    f.as_system(session)
    assert session.get(Signal, w.signals[0]).status == "active"


def test_an_uphold_takes_a_second_staff_member_and_retires_the_hash_everywhere(client, session, g):
    w = g.w
    opened = open_dispute(client, w.token_a, dispute_body(w)).json
    proposed = decide(client, g.staff[0], opened["id"], "uphold")
    assert proposed.status_code == 201 and proposed.json["status"] == "awaiting_confirmation"
    f.as_system(session)
    assert session.get(Signal, w.signals[0]).status == "active"
    assert decide(client, g.staff[0], opened["id"], "confirm").status_code == 403  # not by the proposer
    confirmed = decide(client, g.staff[1], opened["id"], "confirm")
    assert confirmed.status_code == 201, confirmed.json
    assert confirmed.json["status"] == "upheld"
    assert [(d["action"], d["state"]) for d in confirmed.json["decisions"]] == [
        ("uphold", "proposed"), ("confirm", "effective")
    ]
    f.as_system(session)
    signal = session.get(Signal, w.signals[0])
    assert (signal.status, signal.removal_reason) == ("retired", "retired")
    assert session.get(RetiredValue, ("pdq", w.values[0])) is not None
    pending = session.get(PendingChange, (w.c.id, w.signals[0]))
    assert (pending.op, pending.reason) == ("remove", "retired")
    # Submitting the hash again is refused.
    r = client.post(
        f"/v1/collections/{w.c.id}/signals",
        json={"signals": [{"type": "pdq", "value": w.values[0]}]},
        headers=f.auth(f.token(session, w.owner, ["hashes:write"])),
    )
    assert r.status_code == 409


def test_without_four_eyes_an_uphold_is_effective_at_once(session, g):
    w = g.w
    f.as_system(session)
    dispute, _ = governance.open_dispute(
        session, partner_id=w.a.id, body=dispute_body(w), actor=Actor(type="partner", partner=w.a.id)
    )
    staff = governance.Staff(Actor(type="user", user=g.users[0].id), g.users[0].id, g.users[0].partner_id)
    governance.decide(session, dispute_id=dispute.id, action="uphold", reason="confirmed", staff=staff, four_eyes=False)
    assert session.get(Dispute, dispute.id).status == "upheld"
    assert session.get(Signal, w.signals[0]).status == "retired"


def test_quarantine_withholds_and_release_publishes_again_under_a_new_id(client, session, g):
    w = g.w
    opened = open_dispute(client, w.token_a, dispute_body(w)).json
    assert decide(client, g.staff[0], opened["id"], "quarantine").json["status"] == "quarantined"
    f.as_system(session)
    assert session.get(Signal, w.signals[0]).status == "quarantined"
    assert session.get(PendingChange, (w.c.id, w.signals[0])).reason == "quarantined"
    owner_token = f.token(session, w.owner, ["hashes:write"])
    again = client.post(
        f"/v1/collections/{w.c.id}/signals",
        json={"signals": [{"type": "pdq", "value": w.values[0]}]},
        headers=f.auth(owner_token),
    )
    assert again.status_code == 409 and "quarantined" in json.dumps(again.json)

    released = decide(client, g.staff[1], opened["id"], "release")
    assert released.status_code == 201 and released.json["status"] == "released"
    f.as_system(session)
    assert session.get(Signal, w.signals[0]).status == "released"
    fresh = session.scalars(
        select(Signal).where(Signal.collection_id == w.c.id, Signal.value == w.values[0], Signal.status == "active")
    ).one()
    assert fresh.id != w.signals[0]
    assert session.get(PendingChange, (w.c.id, fresh.id)).op == "add"
    # The claims go with the hash: the contributor's plain claim, and any case's claim rows.
    assert fresh.plain_claim is True
    assert session.scalars(select(SignalClaim.signal_id).where(SignalClaim.signal_id == w.signals[0])).all() == []


def test_rejecting_an_uphold_of_a_quarantined_signal_publishes_it_again(client, session, g):
    w = g.w
    opened = open_dispute(client, w.token_a, dispute_body(w)).json
    assert decide(client, g.staff[0], opened["id"], "quarantine").status_code == 201
    assert decide(client, g.staff[0], opened["id"], "uphold").json["status"] == "awaiting_confirmation"
    f.as_system(session)
    assert session.get(Signal, w.signals[0]).status == "quarantined"  # still withheld while the uphold waits
    r = decide(client, g.staff[1], opened["id"], "reject")
    assert r.status_code == 201 and r.json["status"] == "rejected"
    details = entry(session, r.json["decisions"][-1]["audit_seq"])["details"]
    f.as_system(session)
    session.expire_all()
    assert session.get(Signal, w.signals[0]).status == "released"
    fresh = session.get(Signal, details["republished"])
    assert fresh.status == "active" and fresh.value == w.values[0]
    assert details["rejects"] == r.json["decisions"][-2]["id"]


def test_the_false_positive_flag_opens_a_dispute(session, g):
    w = g.w
    f.as_system(session)
    session.add(SignalFlag(signal_id=w.signals[1], false_positive_partners=3, flagged_at=kit.T0, updated_at=kit.T0))
    session.flush()
    assert governance.open_flag_disputes(session, kit.T0) == 1
    assert governance.open_flag_disputes(session, kit.T0) == 0  # once per flag
    dispute = session.scalars(select(Dispute).where(Dispute.signal_id == w.signals[1])).one()
    assert (dispute.source, dispute.partner_id, dispute.status) == ("flag", None, "open")


def test_suspension_and_membership_are_decisions_with_reasons(client, session, g):
    w = g.w
    path = f"/v1/governance/partners/{w.b.id}/suspend"
    assert client.post(path, json={}, headers=f.auth(g.staff[0])).status_code == 422
    r = client.post(path, json={"reason": "leaked its feed"}, headers=f.auth(g.staff[0]))
    assert r.status_code == 201 and r.json["action"] == "suspend"
    f.as_system(session)
    session.expire_all()
    assert session.get(Partner, w.b.id).status == "suspended"
    assert entry(session, r.json["audit_seq"])["action"] == "partner.suspend"
    assert client.post(path, json={"reason": "again"}, headers=f.auth(g.staff[0])).status_code == 409

    members = f"/v1/governance/collections/{w.c.id}/members"
    body = {"partner": w.a.id, "access": "reader", "grant": False, "reason": "contract ended"}
    r = client.post(members, json=body, headers=f.auth(g.staff[0]))
    assert r.status_code == 201, r.json
    assert r.json["action"] == "revoke"
    assert client.post(members, json=body, headers=f.auth(g.staff[0])).status_code == 409


# --- cases -----------------------------------------------------------------------------------------------


def _intake(session, w: rk.World):
    intake = f.partner(session, kind="intake", name="helpline")
    rk.grant(session, w.keys, w.c, intake)
    collections.set_access(
        session, w.c.id, intake.id, Access.CONTRIBUTOR, True, actor=Actor.operator(), hub_name=w.keys.hub_name,
        signer=w.keys.signer("collection"), now=kit.T0,
    )
    return intake, f.token(session, intake, ["hashes:write"])


def submit(client, w: rk.World, token: str, value: str, case: str | None):
    item = {"type": "pdq", "value": value, **({"case_ref": case} if case else {})}
    r = client.post(f"/v1/collections/{w.c.id}/signals", json={"signals": [item]}, headers=f.auth(token))
    assert r.status_code == 201, r.json
    return r.json["ids"][0]


def test_withdrawing_a_case_removes_a_hash_only_when_no_claim_is_left(client, session, g):
    w = g.w
    _intake_partner, token = _intake(session, w)
    value = kit.pdq()
    sid = submit(client, w, token, value, "case 1/2026")
    assert submit(client, w, token, value, "case 2/2026") == sid  # a duplicate adds its claim
    f.as_system(session)
    stored = session.scalars(select(SignalClaim.case_digest).where(SignalClaim.signal_id == sid)).all()
    assert len(stored) == 2 and not any("2026" in d for d in stored)

    r = client.post("/v1/cases/case 1/2026/withdraw", headers=f.auth(token))
    assert r.status_code == 200 and r.json["claims"] == 1 and r.json["removed"] == 0
    e = entry(session, r.json["audit_seq"])
    assert e["action"] == "case.withdraw" and "case 1" not in json.dumps(e)
    f.as_system(session)
    assert session.get(Signal, sid).status == "active"

    before = counts(session)
    assert client.post("/v1/cases/case 1/2026/withdraw", headers=f.auth(token)).status_code == 404
    # Another partner without hashes:write is refused before any case is looked up.
    assert client.post("/v1/cases/case 2/2026/withdraw", headers=f.auth(w.token_a)).status_code == 403
    assert counts(session) == before

    r = client.post("/v1/cases/case 2/2026/withdraw", headers=f.auth(token))
    assert r.status_code == 200 and r.json["removed"] == 1
    f.as_system(session)
    signal = session.get(Signal, sid)
    assert (signal.status, signal.removal_reason) == ("retracted", "withdrawn")


def test_a_contribution_without_a_case_keeps_the_hash_after_a_withdrawal(client, session, g):
    w = g.w
    _, token = _intake(session, w)
    value = kit.pdq()
    sid = submit(client, w, token, value, "case-9")
    owner_token = f.token(session, w.owner, ["hashes:write"])
    assert submit(client, w, owner_token, value, None) == sid
    r = client.post("/v1/cases/case-9/withdraw", headers=f.auth(token))
    assert r.status_code == 200 and r.json["removed"] == 0
    f.as_system(session)
    assert session.get(Signal, sid).status == "active"


def test_a_contribution_without_a_case_is_the_signal_s_plain_claim(client, session, g):
    w = g.w
    _, token = _intake(session, w)
    plain, cased = kit.pdq(), kit.pdq()
    r = client.post(
        f"/v1/collections/{w.c.id}/signals",
        json={"signals": [{"type": "pdq", "value": plain}, {"type": "pdq", "value": cased, "case_ref": "c-7"}]},
        headers=f.auth(token),
    )
    assert r.status_code == 201
    f.as_system(session)
    first, second = (session.get(Signal, i) for i in r.json["ids"])
    assert (first.plain_claim, second.plain_claim) == (True, False)
    rows = session.execute(select(SignalClaim.signal_id).where(SignalClaim.signal_id.in_(r.json["ids"]))).scalars()
    assert list(rows) == [second.id]
    # Withdrawing the case removes the cased hash; the plain one has no case to withdraw.
    done = client.post("/v1/cases/c-7/withdraw", headers=f.auth(token))
    assert done.status_code == 200 and done.json["removed"] == 1
    session.expire_all()
    assert (session.get(Signal, first.id).status, session.get(Signal, second.id).status) == ("active", "retracted")


def test_the_case_digest_is_keyed_and_separated_by_partner():
    a = signals.case_digest(b"k" * 32, "p-1", "case-1")
    assert a != signals.case_digest(b"k" * 32, "p-2", "case-1")
    assert a != signals.case_digest(b"j" * 32, "p-1", "case-1")
    assert len(a) == 64 and "case-1" not in a
