"""Reports over the API: idempotency, own-only visibility, outcome history, refusals that write nothing."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from audit.canonical import canonical_json
from hub.transparency.models import AuditEntry
from tests.hub import factories as f
from tests.hub import reportkit as rk


@pytest.fixture
def w(session, settings):
    return rk.build(session, settings)


def post(client, token, items):
    return client.post("/v1/reports", json={"reports": items}, headers=f.auth(token))


def entry(session, seq):
    f.as_system(session)
    raw = session.scalar(select(AuditEntry.entry).where(AuditEntry.seq == seq))
    return json.loads(raw)


def test_a_report_is_recorded_with_its_digest_in_one_audit_entry(client, session, w):
    by_value = rk.item(w, "r-2", 1, signal={"type": "pdq", "value": w.values[1].upper()}, seq=1)
    r = post(client, w.token_a, [rk.item(w, "r-1"), by_value])
    assert r.status_code == 201, r.json
    assert r.json["created"] == 2 and r.json["replayed"] == 0
    e = entry(session, r.json["audit_seq"])
    assert e["action"] == "reports.submit" and e["subject"] == f"partner/{w.a.id}"
    assert e["details"]["reports"] == [{"id": x["id"], "sha256": x["sha256"]} for x in r.json["reports"]]

    got = client.get("/v1/reports/r-2", headers=f.auth(w.token_a))
    assert got.status_code == 200
    body = got.json
    assert body["signal"] == w.signals[1] and body["seq"] == 1 and body["outcome"] == "pending_review"
    assert body["content_ref_digest"] != "post-r-2" and "post-r-2" not in got.get_data(as_text=True)
    # The digest in the audit entry is the SHA-256 of the report's canonical JSON: anyone can recompute it.
    assert hashlib.sha256(canonical_json(body["document"])).hexdigest() == r.json["reports"][1]["sha256"]
    assert [h["version"] for h in body["history"]] == [1]
    assert body["history"][0]["audit_seq"] == r.json["audit_seq"]


def test_the_same_id_twice_is_one_report_and_another_body_is_a_422(client, session, w):
    first = post(client, w.token_a, [rk.item(w, "r-1")])
    assert first.status_code == 201
    before = rk.counts(session)
    again = post(client, w.token_a, [rk.item(w, "r-1")])
    assert again.status_code == 200, again.json
    assert again.json["created"] == 0 and again.json["replayed"] == 1 and again.json["audit_seq"] is None
    assert again.json["reports"][0]["sha256"] == first.json["reports"][0]["sha256"]
    assert rk.counts(session) == before
    # Naming the same signal by type and value is the same body.
    same = post(client, w.token_a, [rk.item(w, "r-1", signal={"type": "pdq", "value": w.values[0]})])
    assert same.status_code == 200 and same.json["replayed"] == 1
    other = post(client, w.token_a, [rk.item(w, "r-2"), rk.item(w, "r-1", distance=9)])
    assert other.status_code == 422
    assert other.json["errors"]["reports"] == {"1": ["this report id was already used with another body"]}
    assert "r-1" in other.json["message"]
    assert rk.counts(session) == before


def test_one_id_twice_in_one_request(client, session, w):
    r = post(client, w.token_a, [rk.item(w, "r-1"), rk.item(w, "r-1")])
    assert r.status_code == 201 and r.json["created"] == 1 and r.json["replayed"] == 1
    before = rk.counts(session)
    r = post(client, w.token_a, [rk.item(w, "r-9"), rk.item(w, "r-9", surface="account")])
    assert r.status_code == 422 and list(r.json["errors"]["reports"]) == ["1"]
    assert rk.counts(session) == before


def _bad(w):
    later = rk.t(rk.now() + timedelta(days=1))
    matched = w.matched
    return [
        (rk.item(w, "b", signal={"id": "00000000-0000-0000-0000-000000000000"}), "unknown signal"),
        (rk.item(w, "b", signal={"type": "pdq", "value": "ab" * 32}), "unknown signal"),
        (rk.item(w, "b", signal={"id": w.other_signal}), "unknown signal"),
        (rk.item(w, "b", signal={"id": w.other_signal}, collection=w.other.id, seq=1), "unknown collection"),
        (rk.item(w, "b", collection="no-such-collection"), "unknown collection"),
        (rk.item(w, "b", seq=3), "never served"),
        (rk.item(w, "b", 2, seq=1), "before the batch that added"),
        (rk.item(w, "b", matched_at=later), "matched_at is in the future"),
        (rk.item(w, "b", outcome="removed", actioned_at=later), "actioned_at is in the future"),
        (
            rk.item(w, "b", outcome="removed", actioned_at=rk.t(matched - timedelta(minutes=1))),
            "actioned_at is before matched_at",
        ),
        (rk.item(w, "b", outcome="removed"), "needs actioned_at"),
        (rk.item(w, "b", actioned_at=rk.t(matched)), "no actioned_at yet"),
        (rk.item(w, "b", outcome="deleted"), "outcome must be one of"),
        (rk.item(w, "b", surface="email"), "surface must be one of"),
        (rk.item(w, "b", distance=257), "distance must be"),
        (rk.item(w, "b", distance=1, signal={"type": "md5", "value": "ab" * 16}), "distance 0"),
        (rk.item(w, "b", matched_at="2026-01-01 10:00"), "matched_at: an RFC 3339"),
        (rk.item(w, "b", matched_at="2026-01-01T10:00:00"), "needs a zone"),
        (rk.item(w, "b", automated_detection="yes"), "automated_detection must be"),
        (rk.item(w, "b", content_ref=...), "content_ref must be"),
        (rk.item(w, "b", content_ref="x" * 513), "content_ref must be"),
        (rk.item(w, "a/b"), "id must be"),
        (rk.item(w, "b", url="https://example.org/p/1"), "unknown fields: url"),
        (rk.item(w, "b", signal="pdq:ab"), 'signal is {"id": ...}'),
        (rk.item(w, "b", signal={"id": 7}), "signal.id must be"),
        (rk.item(w, "b", seq=0), "seq must be a positive integer"),
        ("r-3", "a report is an object"),
    ]


BAD_IDS = [
    "unknown signal id",
    "unknown signal value",
    "signal of an unreadable collection",
    "report naming an unreadable collection",
    "unknown collection",
    "seq beyond the latest sealed batch",
    "seq before the batch that added the signal",
    "matched_at in the future",
    "actioned_at in the future",
    "actioned before matched",
    "removed without actioned_at",
    "pending_review with actioned_at",
    "unknown outcome",
    "unknown surface",
    "distance above 256",
    "md5 with a distance",
    "time without T",
    "time without a zone",
    "automated_detection not a bool",
    "content_ref missing",
    "content_ref too long",
    "report id with a slash",
    "unknown field (a URL)",
    "signal given as a bare string",
    "signal id not a string",
    "seq zero",
    "item not an object",
]


@pytest.mark.parametrize("case", range(len(BAD_IDS)), ids=BAD_IDS)
def test_a_bad_item_refuses_the_whole_request_and_writes_nothing(client, session, w, case):
    bad, message = _bad(w)[case]
    before = rk.counts(session)
    r = post(client, w.token_a, [rk.item(w, "good"), bad])
    assert r.status_code == 422, r.json
    assert list(r.json["errors"]["reports"]) == ["1"]
    assert message in " ".join(r.json["errors"]["reports"]["1"]), r.json
    assert "#1" in r.json["message"]
    assert rk.counts(session) == before


@pytest.mark.parametrize(
    ("body", "status"),
    [({"reports": []}, 422), ({"reports": "x"}, 422), ({"items": []}, 400), ([], 400)],
    ids=["empty list", "not a list", "wrong key", "not an object"],
)
def test_a_malformed_body_is_refused(client, session, w, body, status):
    before = rk.counts(session)
    r = client.post("/v1/reports", json=body, headers=f.auth(w.token_a))
    assert r.status_code == status
    assert rk.counts(session) == before


def test_more_than_a_thousand_reports_is_a_413(client, session, w):
    before = rk.counts(session)
    r = post(client, w.token_a, [rk.item(w, f"r-{i}") for i in range(1001)])
    assert r.status_code == 413
    assert rk.counts(session) == before


def test_the_scope_is_required(client, session, w):
    token = f.token(session, w.a, ["feed:read"])
    assert post(client, token, [rk.item(w, "r-1")]).status_code == 403
    assert client.get("/v1/reports", headers=f.auth(token)).status_code == 403


def test_an_outcome_change_keeps_the_history_and_is_its_own_audit_entry(client, session, w):
    created = post(client, w.token_a, [rk.item(w, "r-1")])
    change = {"outcome": "removed", "actioned_at": rk.t(rk.now()), "automated_decision": False}
    r = client.patch("/v1/reports/r-1", json=change, headers=f.auth(w.token_a))
    assert r.status_code == 200, r.json
    assert r.json["outcome"] == "removed" and r.json["version"] == 2
    history = r.json["history"]
    assert [(h["version"], h["outcome"]) for h in history] == [(1, "pending_review"), (2, "removed")]
    assert history[0]["sha256"] == created.json["reports"][0]["sha256"]
    e = entry(session, history[1]["audit_seq"])
    assert e["action"] == "report.outcome" and e["subject"] == f"report/{w.a.id}/r-1"
    assert e["details"] == {"report": "r-1", "version": 2, "outcome": "removed", "sha256": history[1]["sha256"]}
    assert hashlib.sha256(canonical_json(r.json["document"])).hexdigest() == history[1]["sha256"]

    # A retried PATCH (same outcome, time and decision) writes nothing.
    before = rk.counts(session)
    again = client.patch("/v1/reports/r-1", json=change, headers=f.auth(w.token_a))
    assert again.status_code == 200 and again.json["version"] == 2
    assert rk.counts(session) == before

    # A bad change writes nothing.
    early = {"outcome": "restricted", "actioned_at": "2020-01-01T00:00:00Z", "automated_decision": False}
    bad = client.patch("/v1/reports/r-1", json=early, headers=f.auth(w.token_a))
    assert bad.status_code == 422 and "before matched_at" in bad.json["message"]
    bad = client.patch("/v1/reports/r-1", json={"outcome": "gone"}, headers=f.auth(w.token_a))
    assert bad.status_code == 422
    assert rk.counts(session) == before

    # The old version is still there, unchanged: nothing is overwritten.
    got = client.get("/v1/reports/r-1", headers=f.auth(w.token_a)).json
    assert got["history"][0] == history[0]


def test_reports_are_visible_to_their_partner_only(client, session, w):
    post(client, w.token_a, [rk.item(w, "r-1")])
    change = {"outcome": "removed", "actioned_at": rk.t(rk.now()), "automated_decision": False}
    before = rk.counts(session)
    assert client.get("/v1/reports/r-1", headers=f.auth(w.token_b)).status_code == 404
    assert client.patch("/v1/reports/r-1", json=change, headers=f.auth(w.token_b)).status_code == 404
    listed = client.get("/v1/reports", headers=f.auth(w.token_b))
    assert listed.status_code == 200 and listed.json["reports"] == []
    assert rk.counts(session) == before
    # Report ids are per partner: B may use the same id for its own report.
    r = post(client, w.token_b, [rk.item(w, "r-1", distance=7)])
    assert r.status_code == 201 and r.json["created"] == 1
    assert client.get("/v1/reports/r-1", headers=f.auth(w.token_a)).json["distance"] == 4
    assert client.get("/v1/reports/r-1", headers=f.auth(w.token_b)).json["distance"] == 7


def test_listing_filters_and_pages(client, session, w):
    old = rk.t(rk.now() - timedelta(days=3))
    items = [rk.item(w, f"r-{i}", i % 3, content_ref=f"post-{i % 2}") for i in range(5)]
    items[4]["matched_at"] = old
    items[3].update(outcome="removed", actioned_at=rk.t(rk.now()), automated_decision=False)
    assert post(client, w.token_a, items).status_code == 201

    def ids(query):
        r = client.get(f"/v1/reports?{query}", headers=f.auth(w.token_a))
        assert r.status_code == 200, r.json
        return [x["id"] for x in r.json["reports"]], r.json["next"]

    seen, cursor = [], ""
    while True:
        page, cursor = ids(f"limit=2&cursor={cursor}" if cursor else "limit=2")
        seen += page
        if cursor is None:
            break
    assert seen == [f"r-{i}" for i in range(5)]
    assert ids("outcome=removed")[0] == ["r-3"]
    assert ids(f"collection={w.c.id}")[0] == seen and ids(f"collection={w.other.id}")[0] == []
    since = rk.t(rk.now() - timedelta(days=1))
    assert ids(f"since={since}")[0] == ["r-0", "r-1", "r-2", "r-3"]
    assert ids(f"until={since}")[0] == ["r-4"]
    assert ids("content_ref=post-1")[0] == ["r-1", "r-3"]
    assert client.get("/v1/reports?outcome=gone", headers=f.auth(w.token_a)).status_code == 422
    assert client.get("/v1/reports?cursor=!!", headers=f.auth(w.token_a)).status_code == 400


@pytest.mark.parametrize(
    ("report_id", "actioned"), [("r-1", None), ("R.2:x_y", rk.now()), ("weird\"id\\é", rk.now())],
    ids=["plain", "with actioned_at", "needs escaping (falls back to audit's encoder)"],
)
def test_the_fast_document_encoder_writes_rfc8785_bytes(report_id, actioned):
    from datetime import UTC, datetime

    from hub.reports.service import ReportDocument

    doc = ReportDocument(
        "p", report_id, "s", "c", 3, 17, "upload", "ab" * 32, datetime(2026, 1, 1, tzinfo=UTC), True, 2,
        "removed", actioned, False,
    )
    assert doc.to_bytes() == canonical_json(doc.to_dict())


def test_row_level_security_hides_other_partners_reports(database, client, session, w):
    from hub import rls
    from hub.reports.models import Report, ReportOutcome

    post(client, w.token_a, [rk.item(w, "r-a")])
    post(client, w.token_b, [rk.item(w, "r-b")])
    rls.set_tenant(session, w.b.id)
    assert {r.report_id for r in session.scalars(select(Report))} == {"r-b"}
    assert {o.report_id for o in session.scalars(select(ReportOutcome))} == {"r-b"}
    rls.set_tenant(session, rls.SYSTEM)
    assert {r.report_id for r in session.scalars(select(Report))} == {"r-a", "r-b"}
