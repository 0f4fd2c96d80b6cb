"""Reports end to end in the audit log: an export `hashfed-audit verify` accepts, and an inclusion proof
for a single report's digest; and the false-positive flag."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from sqlalchemy import select

from audit.canonical import canonical_json
from audit.cli import main as audit_main
from audit.export import verify_export
from audit.merkle import leaf_hash, verify_inclusion
from hub.app import create_app
from hub.config import Settings
from hub.db import make_session_factory
from hub.ops.jobs import integrate_audit_log
from hub.reports import service
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor
from hub.transparency.models import AuditEntry
from tests.conftest import BASE_URL
from tests.hub import factories as f
from tests.hub import feedkit as kit
from tests.hub import reportkit as rk


def test_reports_verify_in_an_export_and_each_has_an_inclusion_proof(fresh_database, tmp_path, time_machine):
    time_machine.move_to(kit.T0 + timedelta(days=1))  # the export is verified against the key set made at T0
    settings = Settings(
        var_dir=tmp_path / "var", database_url=fresh_database.app_url, base_url=BASE_URL, hub_name="hub.test"
    )
    factory = make_session_factory(fresh_database.engine)
    with factory.begin() as s:
        w = rk.build(s, settings)
    client = create_app(settings, engine=fresh_database.engine).test_client()
    r = client.post(
        "/v1/reports", json={"reports": [rk.item(w, f"r-{i}", i) for i in range(3)]}, headers=f.auth(w.token_a)
    )
    assert r.status_code == 201, r.json
    change = {"outcome": "removed", "actioned_at": rk.t(rk.now()), "automated_decision": False}
    assert client.patch("/v1/reports/r-1", json=change, headers=f.auth(w.token_a)).status_code == 200
    integrate_audit_log(factory, rk.now() + timedelta(seconds=1), keys=w.keys)

    export = tmp_path / "export"
    with factory() as s:
        auditlog.export(s, str(export), "hub.test", rk.now())
    assert verify_export(export).ok
    assert audit_main(["verify", str(export)]) == 0

    # A regulator gets one report's document: its digest is in an entry the log provably contains.
    report = client.get("/v1/reports/r-1", headers=f.auth(w.token_a)).json
    for version in report["history"]:
        with factory() as s:
            f.as_system(s)
            entry = s.scalar(select(AuditEntry.entry).where(AuditEntry.seq == version["audit_seq"]))
            size = auditlog.tree_size(s)
            proof = auditlog.inclusion_proof(s, version["audit_seq"], size)
        details = json.loads(entry)["details"]
        listed = details.get("reports") or [{"id": details["report"], "sha256": details["sha256"]}]
        assert {"id": "r-1", "sha256": version["sha256"]} in listed
        verify_inclusion(proof.seq, proof.size, leaf_hash(entry), proof.proof, proof.root)
    assert hashlib.sha256(canonical_json(report["document"])).hexdigest() == report["history"][-1]["sha256"]


def test_false_positives_from_enough_partners_flag_the_signal(session, settings):
    w = rk.build(session, settings)
    c = f.partner(session, name="partner-c")
    rk.grant(session, w.keys, w.c, c)
    fp = {"outcome": "false_positive", "actioned_at": rk.t(rk.now()), "automated_decision": False}

    def report(p, rid, **extra):
        return service.submit(
            session, partner_id=p.id, items=[rk.item(w, rid, **extra)], actor=Actor(type="partner", partner=p.id),
            hub_secret=b"k" * 32, flag_threshold=3,
        )

    report(w.a, "a-1", **fp)
    report(w.a, "a-2", **fp)  # the same partner twice is one vote
    report(w.b, "b-1")
    assert service.flag_of(session, w.signals[0]).false_positive_partners == 1
    service.update_outcome(
        session, partner_id=w.b.id, report_id="b-1", body=fp, actor=Actor(type="partner", partner=w.b.id),
        flag_threshold=3,
    )
    flag = service.flag_of(session, w.signals[0])
    assert flag.false_positive_partners == 2 and flag.flagged_at is None
    done = report(c, "c-1", **fp)
    assert done.flagged == [w.signals[0]]
    flag = service.flag_of(session, w.signals[0])
    assert flag.flagged_at is not None and flag.false_positive_partners == 3
    entry = json.loads(session.scalar(select(AuditEntry.entry).where(AuditEntry.seq == flag.flag_audit_seq)))
    assert entry["action"] == "signal.flag" and entry["subject"] == f"signal/{w.signals[0]}"
    assert entry["details"] == {"reason": "false_positive_reports", "partners": 3, "threshold": 3}
    assert [x.signal_id for x in service.flagged_signals(session)] == [w.signals[0]]
    assert service.flag_of(session, w.signals[1]) is None
