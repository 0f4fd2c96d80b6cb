"""End to end: concurrent writers, the export a regulator verifies, and tampering it must detect."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from audit.export import verify_export
from audit.payloads import AuditEntry as EntryPayload
from hub.db import make_engine, make_session_factory
from hub.ops.jobs import integrate_audit_log
from hub.transparency import appendonly, auditlog
from hub.transparency.auditlog import Actor, record
from hub.transparency.models import AuditEntry
from tests.hub.auditkit import HUB, T0, make_hub_keys, settings_for

ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_append_without_gap_or_duplicate(fresh_database):
    script = textwrap.dedent(
        """
        import sys
        from hub.transparency.auditlog import Actor, record
        from hub.db import make_engine, make_session_factory
        factory = make_session_factory(make_engine(sys.argv[1]))
        for i in range(150):
            with factory.begin() as s:
                record(s, Actor.system(sys.argv[2]), "test.append", f"n/{i}")
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, fresh_database.app_url, name], cwd=ROOT)
        for name in ("w1", "w2")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with fresh_database.engine.connect() as conn:
        seqs = [r[0] for r in conn.execute(select(AuditEntry.seq).order_by(AuditEntry.seq))]
    assert seqs == list(range(300))


def _build(fresh_database, tmp_path, n=12):
    settings = settings_for(fresh_database.app_url, tmp_path)
    factory = make_session_factory(fresh_database.engine)
    with factory.begin() as s:
        hub_keys, _root = make_hub_keys(s, settings)
    for batch in range(3):
        with factory.begin() as s:
            for i in range(n // 3):
                seq_time = T0 + timedelta(minutes=batch, seconds=i)
                record(
                    s, Actor(type="partner", partner="p1"), "signal.add", f"signal/{batch}-{i}", now=seq_time
                )
        integrate_audit_log(factory, T0 + timedelta(minutes=batch, seconds=30), keys=hub_keys)
    return settings, factory


def _export(factory, path, now=T0 + timedelta(days=1)):
    with factory() as s:
        auditlog.export(s, str(path), HUB, now)
    return path


def _lines(path):
    return (path / "entries.jsonl").read_bytes().splitlines(keepends=True)


def _edit_entry(path):
    lines = _lines(path)
    rec = json.loads(lines[2])
    body = json.loads(base64.b64decode(rec["entry"]))
    body["action"] = "signal.retire"
    entry = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    rec["entry"] = base64.b64encode(entry).decode()
    lines[2] = (json.dumps(rec, separators=(",", ":"), sort_keys=True) + "\n").encode()
    (path / "entries.jsonl").write_bytes(b"".join(lines))


def _drop_last(path):
    (path / "entries.jsonl").write_bytes(b"".join(_lines(path)[:-3]))


def _swap(path):
    lines = _lines(path)
    lines[4], lines[5] = lines[5], lines[4]
    (path / "entries.jsonl").write_bytes(b"".join(lines))


@pytest.mark.parametrize(
    "tamper", [_edit_entry, _drop_last, _swap], ids=["edited entry", "last entries deleted", "two swapped"]
)
def test_the_verifier_passes_a_real_export_and_fails_a_tampered_one(fresh_database, tmp_path, tamper):
    _settings, factory = _build(fresh_database, tmp_path)
    good = _export(factory, tmp_path / "good")
    with factory() as s:
        from hub.transparency.keys import keyset_record

        pin = keyset_record(s, 1).payload_sha256
    report = verify_export(good, pin)
    assert report.ok, report.verdict
    assert report.entries == 12 and report.checkpoints == 3
    bad = _export(factory, tmp_path / "bad")
    tamper(bad)
    report = verify_export(bad, pin)
    assert not report.ok and report.verdict.startswith("FAIL"), report.verdict


def _change_row_behind_the_hubs_back(database, seq):
    """What an attacker with the owner's (superuser's) rights could do: bypass the trigger for one UPDATE."""
    engine = make_engine(database.url)
    try:
        with engine.begin() as conn:
            original = conn.execute(
                text("SELECT entry FROM audit_entries WHERE seq = :s"), {"s": seq}
            ).scalar_one()
            body = EntryPayload.from_bytes(bytes(original))
            forged = EntryPayload(
                body.seq, body.time, body.actor, "nothing.happened", body.subject, {}
            ).to_bytes()
            conn.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_no_update_delete"))
            conn.execute(
                text("UPDATE audit_entries SET entry = :e WHERE seq = :s"), {"e": forged, "s": seq}
            )
            conn.execute(
                text("ALTER TABLE audit_entries ENABLE ALWAYS TRIGGER audit_entries_no_update_delete")
            )
            assert appendonly.missing_triggers(conn) == []
    finally:
        engine.dispose()


def test_a_row_changed_in_the_database_fails_verification(fresh_database, tmp_path):
    _settings, factory = _build(fresh_database, tmp_path)
    _change_row_behind_the_hubs_back(fresh_database, 3)
    report = verify_export(_export(factory, tmp_path / "export"))
    assert not report.ok and "RootMismatchError" in report.verdict, report.verdict
