"""The review pages: the queue, a dispute with its signal's history, and the decide forms over HTTP."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from hub.governance.models import Decision, Dispute
from hub.transparency.auditlog import AuditEntry
from tests.console.conftest import GOV2_EMAIL, GOV_EMAIL, REG_EMAIL, csrf_token, sign_in
from tests.hub import factories as f


def _state(session, world) -> tuple[str, int, int]:
    f.as_system(session)
    session.expire_all()
    return (session.get(Dispute, world.dispute_id).status,
            session.scalar(select(func.count()).select_from(Decision)),
            session.scalar(select(func.count()).select_from(AuditEntry)))


def _decide(client, world, action: str, reason: str, token: str | None = None):
    url = f"/console/disputes/{world.dispute_id}"
    if token is None:
        token = csrf_token(client.get(url).get_data(as_text=True))
    return client.post(f"{url}/decide", data={"action": action, "reason": reason, "csrf_token": token})


def test_the_queue_lists_waiting_disputes_by_type_and_prefix(client, world):
    sign_in(client, GOV_EMAIL)
    html = client.get("/console/queue").get_data(as_text=True)
    value = world.w.values[0]
    assert f"<code>pdq:{value[:8]}…</code>" in html and value[:9] not in html
    assert f'href="/console/disputes/{world.dispute_id}"' in html
    assert "2 d 0 h" in html  # opened two days before NOW
    for query, listed in [("status=quarantined", False), ("reason=false_positive", True),
                          ("older_than_days=3", False), ("older_than_days=1", True)]:
        page = client.get(f"/console/queue?{query}").get_data(as_text=True)
        assert (world.dispute_id in page) is listed, query
    assert client.get("/console/queue?status=bogus").status_code == 400
    dashboard = client.get("/console/").get_data(as_text=True)
    assert "<td>1 to 7 days ago</td><td class=\"num\">1</td>" in dashboard


def test_the_dispute_page_shows_the_signal_s_history_but_never_the_hash(client, world):
    sign_in(client, GOV_EMAIL)
    r = client.get(f"/console/disputes/{world.dispute_id}")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    value = world.w.values[0]
    assert f"pdq:{value[:8]}…" in html and value[:9] not in html
    history = html[html.index('id="history"'):]
    for kind in ("<td>added</td>", "<td>report</td>", "<td>dispute</td>"):
        assert kind in history, kind
    assert "a cat, not the image" in html
    assert '<label for="reason">' in html and '<label for="action">' in html
    assert client.get("/console/disputes/nope").status_code == 404


def test_reject_from_the_form_is_recorded_with_its_audit_entry(client, world, session):
    sign_in(client, GOV_EMAIL)
    before = _state(session, world)
    r = _decide(client, world, "reject", "the reported match is a different image")
    assert r.status_code == 303 and r.headers["Location"].endswith(f"/console/disputes/{world.dispute_id}?done=reject")
    status, decisions, entries = _state(session, world)
    assert (status, decisions, entries) == ("rejected", before[1] + 1, before[2] + 1)
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    seq = session.scalar(select(Decision.audit_seq).where(Decision.subject_id == world.dispute_id))
    assert f'href="/console/audit?before={seq + 1}#entry-{seq}"' in page
    assert "Recorded: reject." in page and 'id="decide"' not in page  # settled: no form left


def test_four_eyes_uphold_needs_a_second_staff_member(client, app, world, session):
    sign_in(client, GOV_EMAIL)
    assert _decide(client, world, "uphold", "the same image, confirmed with the intake").status_code == 303
    assert _state(session, world)[0] == "awaiting_confirmation"
    refused = _decide(client, world, "confirm", "confirming my own uphold")
    assert refused.status_code == 403 and "second staff member" in refused.get_data(as_text=True)
    assert _state(session, world)[0] == "awaiting_confirmation"
    colleague = app.test_client()
    sign_in(colleague, GOV2_EMAIL)
    assert _decide(colleague, world, "confirm", "checked the case file").status_code == 303
    assert _state(session, world)[0] == "upheld"


@pytest.mark.parametrize(
    ("action", "reason", "token", "status"),
    [("reject", "", None, 422), ("release", "not quarantined", None, 409), ("explode", "why not", None, 422),
     ("reject", "no token", "", 400), ("reject", "forged token", "0" * 64, 400)],
    ids=["no reason", "action not open to this status", "unknown action", "no csrf token", "forged csrf token"],
)
def test_a_refused_decision_writes_nothing(client, world, session, action, reason, token, status):
    sign_in(client, GOV_EMAIL)
    before = _state(session, world)
    r = _decide(client, world, action, reason, token)
    assert r.status_code == status
    assert _state(session, world) == before
    if status != 400:
        assert re.search(r'id="decide-problem">Not recorded: ', r.get_data(as_text=True))


def test_regulators_neither_see_nor_decide_disputes(client, world, session):
    sign_in(client, REG_EMAIL)
    before = _state(session, world)
    token = csrf_token(client.get("/console/").get_data(as_text=True))
    assert client.get("/console/queue").status_code == 403
    assert client.get(f"/console/disputes/{world.dispute_id}").status_code == 403
    r = client.post(f"/console/disputes/{world.dispute_id}/decide",
                    data={"action": "reject", "reason": "not mine to decide", "csrf_token": token})
    assert r.status_code == 403
    assert _state(session, world) == before


def test_assign_to_me(client, world, session):
    sign_in(client, GOV_EMAIL)
    url = f"/console/disputes/{world.dispute_id}"
    token = csrf_token(client.get(url).get_data(as_text=True))
    assert client.post(f"{url}/assign", data={"csrf_token": token}).status_code == 303
    session.expire_all()
    assert session.get(Dispute, world.dispute_id).assignee_id is not None
    assert GOV_EMAIL in client.get("/console/queue").get_data(as_text=True)
