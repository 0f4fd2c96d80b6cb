"""The audit log: canonical entries, the stored tree, proofs that verify, and append-only tables."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from audit.note import open_checkpoint
from audit.payloads import AuditEntry as EntryPayload
from hub.db import make_engine
from hub.errors import BadRequestError, NotFoundError
from hub.ops.jobs import integrate_audit_log
from hub.transparency import auditlog
from hub.transparency.appendonly import APPEND_ONLY_TABLES
from hub.transparency.auditlog import Actor, record
from tests.hub.auditkit import HUB, T0, make_hub_keys

ACTOR = Actor(type="partner", partner="p1", client="c1")


def _fill(session, n, start=T0):
    return [
        record(session, ACTOR, "signal.add", f"signal/{i}", {"n": i}, now=start + timedelta(seconds=i))
        for i in range(n)
    ]


def test_entries_are_canonical_and_parse_as_audit_entries(session):
    r = record(session, ACTOR, "partner.create", "partner/p1", {"name_digest": "ab"}, now=T0)
    parsed = EntryPayload.from_bytes(r.entry)
    assert parsed.seq == r.seq and parsed.subject == "partner/p1" and parsed.to_bytes() == r.entry
    assert r.leaf_hash == hashlib.sha256(b"\x00" + r.entry).digest()
    assert b'"time":"2026-01-01T00:00:00Z"' in r.entry


@pytest.mark.parametrize(
    ("subject", "details"),
    [("", {}), ("partner/p1", {"ratio": 0.5})],
    ids=["empty subject", "float in details"],
)
def test_record_refuses_bad_entries(session, subject, details):
    with pytest.raises(ValueError):
        record(session, ACTOR, "x", subject, details, now=T0)


def test_entry_times_never_go_backwards(session):
    record(session, ACTOR, "a", "s/1", now=T0 + timedelta(seconds=5))
    late = record(session, ACTOR, "a", "s/2", now=T0)
    assert EntryPayload.from_bytes(late.entry).time == T0 + timedelta(seconds=5)


def test_integration_signs_checkpoints_and_proofs_verify(session, session_factory, settings):
    hub_keys, _root = make_hub_keys(session, settings)
    session.commit()
    with session_factory.begin() as s:
        written = _fill(s, 13)
    first = integrate_audit_log(session_factory, T0, keys=hub_keys)
    assert (first.old_size, first.size) == (0, 13)
    again = integrate_audit_log(session_factory, T0, keys=hub_keys)
    assert again.checkpoint is None and again.size == 13
    with session_factory.begin() as s:
        _fill(s, 8, T0 + timedelta(minutes=1))
    second = integrate_audit_log(session_factory, T0, keys=hub_keys)
    assert second.size == 21

    audit_key = hub_keys.signer("audit").public_key
    with session_factory() as s:
        cp = open_checkpoint(auditlog.latest_checkpoint(s).note, f"{HUB}/audit", [audit_key]).checkpoint
        assert cp.size == 21 and cp.root == auditlog.root(s, 21)
        for seq, size in [(0, 1), (5, 13), (12, 13), (20, 21), (7, 21)]:
            p = auditlog.inclusion_proof(s, seq, size)
            verify_inclusion(seq, size, p.leaf_hash, p.proof, auditlog.root(s, size))
        assert auditlog.inclusion_proof(s, 3, 13).leaf_hash == leaf_hash(written[3].entry)
        for a, b in [(1, 21), (13, 21), (7, 13), (21, 21)]:
            c = auditlog.consistency_proof(s, a, b)
            verify_consistency(a, b, c.root1, c.root2, c.proof)
        page = auditlog.entries(s, 19, limit=5)
        assert [seq for seq, _ in page.entries] == [19, 20] and page.next_start is None
        page = auditlog.entries(s, 0, 10, limit=4)
        assert [seq for seq, _ in page.entries] == [0, 1, 2, 3] and page.next_start == 4


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: auditlog.inclusion_proof(s, 5, 5), BadRequestError),
        (lambda s: auditlog.inclusion_proof(s, 0, 99), NotFoundError),
        (lambda s: auditlog.consistency_proof(s, 0, 3), BadRequestError),
        (lambda s: auditlog.consistency_proof(s, 4, 3), BadRequestError),
        (lambda s: auditlog.root(s, 1), NotFoundError),
        (lambda s: auditlog.entries(s, -1), BadRequestError),
        (lambda s: auditlog.entries(s, 0, limit=5000), BadRequestError),
    ],
    ids=[
        "seq not below size",
        "size not integrated",
        "consistency from 0",
        "from > to",
        "root beyond",
        "negative start",
        "page too large",
    ],
)
def test_bad_proof_requests_are_refused(session, call, error):
    with pytest.raises(error):
        call(session)


def test_node_store_reads_in_one_query(session, session_factory, settings):
    from sqlalchemy import event

    hub_keys, _root = make_hub_keys(session, settings)
    _fill(session, 100)
    session.commit()
    integrate_audit_log(session_factory, T0, keys=hub_keys)
    statements: list[str] = []

    def seen(*args):
        statements.append(args[2])

    with session_factory() as s:
        conn = s.connection()
        event.listen(conn, "before_cursor_execute", seen)
        found = auditlog.SqlNodeStore(s).get_many([(0, 3), (2, 5), (5, 1), (6, 0), (6, 9)])
        event.remove(conn, "before_cursor_execute", seen)
    assert [st for st in statements if st.lstrip().upper().startswith("SELECT")] == statements[:1]
    assert set(found) == {(0, 3), (2, 5), (5, 1), (6, 0)}  # (6, 9) does not exist


# --- append-only, enforced by the database ---------------------------------------------------------------

_STATEMENTS = {
    "audit_entries": "UPDATE audit_entries SET leaf_hash = leaf_hash",
    "audit_nodes": "UPDATE audit_nodes SET hash = hash",
    "audit_checkpoints": "UPDATE audit_checkpoints SET root = root",  # its note alone is re-signable
    "key_sets": "UPDATE key_sets SET envelope = envelope",
}


def test_every_audit_table_is_append_only():
    # The statement tests below cover the audit log's own tables; test_migrations checks that every table
    # in APPEND_ONLY_TABLES (batches, report outcomes, ...) has its triggers and only SELECT/INSERT grants.
    assert set(_STATEMENTS) <= set(APPEND_ONLY_TABLES)


def _forbidden():
    for table in _STATEMENTS:
        yield table, _STATEMENTS[table]
        yield table, f"DELETE FROM {table}"
        yield table, f"TRUNCATE {table}"


def _rows_in_every_table(conn):
    conn.execute(
        text("INSERT INTO audit_entries VALUES (0, :e, :h, :t)"), {"e": b"{}", "h": b"\x00" * 32, "t": T0}
    )
    conn.execute(text("INSERT INTO audit_nodes VALUES (0, 0, :h)"), {"h": b"\x00" * 32})
    conn.execute(text("INSERT INTO audit_checkpoints VALUES (1, :h, 'n', :t)"), {"h": b"\x00" * 32, "t": T0})
    conn.execute(text("INSERT INTO key_sets VALUES (1, :e, :d, :t)"), {"e": b"{}", "d": "0" * 64, "t": T0})


def _refusals(conn):
    out = {}
    for _table, statement in _forbidden():
        nested = conn.begin_nested()
        try:
            conn.execute(text(statement))
            out[statement] = None
        except DBAPIError as e:
            out[statement] = str(e.orig)
        finally:
            if nested.is_active:
                nested.rollback()
    return out


def test_every_forbidden_statement_is_refused_for_the_application(connection, database):
    _rows_in_every_table(connection)
    for statement, error in _refusals(connection).items():
        assert error is not None, statement
        expected = "permission denied"  # the application role has no UPDATE, DELETE or TRUNCATE at all
        assert expected in error, (statement, error)


def test_every_forbidden_statement_is_refused_for_the_owner_by_trigger(database):
    engine = make_engine(database.url)
    try:
        with engine.connect() as conn:
            trans = conn.begin()
            _rows_in_every_table(conn)
            for statement, error in _refusals(conn).items():
                assert error is not None and "append-only" in error, (statement, error)
            trans.rollback()
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("actor", "action", "subject", "details"),
    [
        (Actor(type="partner", partner="p1", client="c1"), "signal.add", "collection/c", {"ids": ["a", "b"], "n": 2}),
        (Actor.system("seal"), "batch.seal", "collection/ü", {"nested": {"z": 1, "a": [True, None]}, "é": "\u2028"}),
        (Actor(type="user", partner="g", user="u"), "user.login", "user/u", {}),
    ],
    ids=["partner with list", "unicode and nesting", "empty details"],
)
def test_entry_bytes_are_exactly_the_payload_types_canonical_bytes(session, actor, action, subject, details):
    """record() splices pre-encoded parts around seq and time; the result must be RFC 8785 to the byte."""
    r = record(session, actor, action, subject, details, now=T0 + timedelta(seconds=7))
    expected = EntryPayload(r.seq, T0 + timedelta(seconds=7), actor.to_dict(), action, subject, details)
    assert r.entry == expected.to_bytes()


def test_a_refused_entry_takes_no_seq(session):
    before = auditlog.next_seq(session)
    with pytest.raises(ValueError):
        record(session, ACTOR, "x", "s/1", {"ratio": 0.5})
    assert auditlog.next_seq(session) == before
    assert record(session, ACTOR, "x", "s/1", {}).seq == before
