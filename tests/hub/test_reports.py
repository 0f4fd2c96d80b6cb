"""Reports over the API: idempotency, own-only visibility, outcome history, refusals that write nothing."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from audit.canonical import canonical_json
from hub.auditlog import AuditEntry
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
