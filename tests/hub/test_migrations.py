"""The schema comes only from migrations: they run on both databases, match the models, and keep triggers."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hub.db import make_engine
from hub.models import metadata
from hub.ops import migrate
from hub.transparency import appendonly
from tests.conftest import create_database, drop_database


def test_database_is_at_head(connection):
    assert migrate.schema_status(connection) is None


def test_models_and_migrations_agree(connection):
    diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), metadata)
    assert diff == []


def test_append_only_triggers_exist_at_head(connection):
    assert appendonly.missing_triggers(connection) == []


def test_full_downgrade_and_upgrade_round_trip(database, tmp_path):
    url, handle = create_database()
    try:
        migrate.downgrade(url, "base")
        engine = make_engine(url)
        assert migrate.current_revisions(engine) == ()
        engine.dispose()
        migrate.upgrade(url, "heads")
        engine = make_engine(url)
        with engine.connect() as conn:
            assert migrate.schema_status(conn) is None
            assert appendonly.missing_triggers(conn) == []
        engine.dispose()
    finally:
        drop_database(handle)


def test_the_application_role_cannot_change_the_audit_log_even_without_triggers(database):
    """On PostgreSQL the hub's role has only SELECT and INSERT on append-only tables."""
    from sqlalchemy import text

    from hub.transparency.appendonly import APPEND_ONLY_TABLES

    with database.engine.connect() as conn:
        for table in APPEND_ONLY_TABLES:
            for privilege, allowed in (("SELECT", True), ("INSERT", True), ("UPDATE", False),
                                       ("DELETE", False), ("TRUNCATE", False)):
                has = conn.execute(
                    text("SELECT has_table_privilege(current_user, :t, :p)"), {"t": table, "p": privilege}
                ).scalar_one()
                assert has is allowed, (table, privilege)


def test_signal_seqs_move_out_of_signals_and_back(database, tmp_path):
    """0009 copies each signal's batch seqs into `signal_seqs`; its downgrade puts them back."""
    from datetime import UTC, datetime

    from sqlalchemy import inspect, text

    url, handle = create_database(migrate_to="0008_signals_rls")
    engine = make_engine(url)
    rows = [("s-new", None, None), ("s-added", 3, None), ("s-removed", 1, 4)]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        with engine.begin() as conn:
            for sid, added, removed in rows:
                conn.execute(
                    text(
                        "INSERT INTO signals (id, collection_id, type, value, contributor_id, status,"
                        " added_audit_seq, added_seq, removed_seq, created_at)"
                        " VALUES (:id, 'c', 'md5', :v, 'p', 'active', 1, :a, :r, :t)"
                    ),
                    {"id": sid, "v": sid.ljust(32, "0"), "a": added, "r": removed, "t": t0},
                )
        migrate.upgrade(url, "0009_signal_seqs")
        with engine.connect() as conn:
            assert "added_seq" not in {c["name"] for c in inspect(conn).get_columns("signals")}
            moved = conn.execute(text("SELECT signal_id, added_seq, removed_seq FROM signal_seqs ORDER BY signal_id"))
            assert sorted(tuple(r) for r in moved) == sorted(r for r in rows if r[1] is not None)
            # nothing updates signals in bulk any more
            assert conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'signals'")).scalar() is None
        migrate.downgrade(url, "0008_signals_rls")
        with engine.connect() as conn:
            back = conn.execute(text("SELECT id, added_seq, removed_seq FROM signals"))
            assert sorted(tuple(r) for r in back) == sorted(rows)
            assert "signal_seqs" not in inspect(conn).get_table_names()
            options = conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'signals'")).scalar()
            assert options == ["fillfactor=50"]
    finally:
        engine.dispose()
        drop_database(handle)


def test_feed_keys_collate_c_and_back(database, tmp_path):
    """0010 makes the feed's key columns collate "C" on PostgreSQL, keeping rows, indexes and RLS policies; its
    downgrade restores the database's collation. SQLite compares bytewise already and is left as it was."""
    from datetime import UTC, datetime

    from sqlalchemy import text

    url, handle = create_database(migrate_to="0009_signal_seqs")
    engine = make_engine(url)
    collations = (
        "SELECT table_name || '.' || column_name, coalesce(collation_name, '') FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name IN"
        " ('signals', 'pending_changes', 'signal_seqs', 'retired_values') AND data_type = 'character varying'"
    )
    policies = "SELECT tablename, policyname, cmd, qual, with_check FROM pg_policies ORDER BY 1, 2"
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO signals (id, collection_id, type, value, contributor_id, status, added_audit_seq,"
                    " created_at) VALUES ('s-1', 'c', 'md5', :v, 'p', 'active', 1, :t)"
                ),
                {"v": "ab" * 16, "t": datetime(2026, 1, 1, tzinfo=UTC)},
            )
            conn.execute(text("INSERT INTO pending_changes VALUES ('c', 's-1', 'add', 1)"))
            before = conn.execute(text(policies)).all()
        migrate.upgrade(url, "0010_feed_keys_collate_c")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, value FROM signals")).all() == [("s-1", "ab" * 16)]
            assert conn.execute(text("SELECT signal_id FROM pending_changes")).scalars().all() == ["s-1"]
            changed = dict(conn.execute(text(collations)).all())
            assert changed["signals.id"] == "C" and changed["signals.value"] == "C"
            assert changed["pending_changes.signal_id"] == "C" and changed["signal_seqs.signal_id"] == "C"
            assert changed["signals.case_ref"] == ""  # not a key: left alone
            assert conn.execute(text(policies)).all() == before
        migrate.downgrade(url, "0009_signal_seqs")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM signals")).scalars().all() == ["s-1"]
            assert set(dict(conn.execute(text(collations)).all()).values()) == {""}
            assert conn.execute(text(policies)).all() == before
    finally:
        engine.dispose()
        drop_database(handle)


def test_batches_store_payload_once_and_back(database, tmp_path):
    """0012 keeps each batch's payload and the `signatures` of its envelope, which rebuild the envelope's exact
    bytes; its downgrade stores the envelopes again. The append-only triggers survive both."""
    from datetime import UTC, datetime

    from sqlalchemy import inspect, text

    from hub.feed.models import envelope_of

    url, handle = create_database(migrate_to="0011_audit_early_release")
    engine = make_engine(url)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    payload = b'{"adds":[],"collection":"c-1","prev":null,"removes":[],"sealed_at":"2026-01-01T00:00:00Z","seq":1}'
    signatures = b'[{"keyid":"' + b"ab" * 32 + b'","sig":"' + b"A" * 86 + b'=="}]'
    envelope = envelope_of(payload, signatures)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO partners VALUES ('p-1', 'P', 'platform', 'active', :t)"), {"t": t0})
            conn.execute(
                text(
                    "INSERT INTO collections (id, slug, owner_id, category, signal_types, pdq_threshold, min_quality,"
                    " descriptor, descriptor_version, descriptor_audit_seq, created_at, description)"
                    " VALUES ('c-1', 'c', 'p-1', 'ncii', 'pdq', 31, 0, :d, 1, 1, :t, '')"
                ),
                {"d": b"{}", "t": t0},
            )
            conn.execute(
                text(
                    "INSERT INTO batches (collection_id, seq, payload, envelope, payload_sha256, adds, removes,"
                    " sealed_at, audit_seq) VALUES ('c-1', 1, :p, :e, :h, 0, 0, :t, 2)"
                ),
                {"p": payload, "e": envelope, "h": "00" * 32, "t": t0},
            )
        migrate.upgrade(url, "0012_batch_stored_once")
        with engine.connect() as conn:
            assert "envelope" not in {c["name"] for c in inspect(conn).get_columns("batches")}
            row = conn.execute(text("SELECT payload, signatures FROM batches")).one()
            assert (bytes(row[0]), bytes(row[1])) == (payload, signatures)
            assert appendonly.missing_triggers(conn) == []
        migrate.downgrade(url, "0011_audit_early_release")
        with engine.connect() as conn:
            assert "signatures" not in {c["name"] for c in inspect(conn).get_columns("batches")}
            assert bytes(conn.execute(text("SELECT envelope FROM batches")).scalar_one()) == envelope
            assert appendonly.missing_triggers(conn) == []
    finally:
        engine.dispose()
        drop_database(handle)


def _insert_signal(conn, sid, value, quality, tags, reason, created_at) -> None:
    """An active md5 signal of collection 'c', in SQL: the database is at an older revision than the models."""
    from sqlalchemy import text

    conn.execute(
        text(
            "INSERT INTO signals (id, collection_id, type, value, quality, tags, contributor_id, status,"
            " added_audit_seq, removal_reason, created_at)"
            " VALUES (:id, 'c', 'md5', :v, :q, :g, 'p', 'active', 1, :r, :t)"
        ),
        {"id": sid, "v": value, "q": quality, "g": tags, "r": reason, "t": created_at},
    )


def test_pending_changes_carry_their_entries_and_back(database, tmp_path):
    """0013 fills each pending row's copy of its batch entry from its signal (an add's type, value, quality and
    tags, a remove's reason); its downgrade drops the copies and keeps the rows."""
    from datetime import UTC, datetime

    from sqlalchemy import inspect, text

    url, handle = create_database(migrate_to="0012_batch_stored_once")
    engine = make_engine(url)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        with engine.begin() as conn:
            for sid, value, quality, tags, reason in (
                ("s-add", "ab" * 16, 90, '["x"]', None),
                ("s-remove", "cd" * 16, None, None, "withdrawn"),
            ):
                _insert_signal(conn, sid, value, quality, tags, reason, t0)
            conn.execute(
                text("INSERT INTO pending_changes VALUES ('c', 's-add', 'add', 1), ('c', 's-remove', 'remove', 2)")
            )
        migrate.upgrade(url, "0013_pending_carries_entries")
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT signal_id, op, audit_seq, type, value, quality, tags, reason FROM pending_changes")
            )
            assert sorted(tuple(r) for r in rows) == [
                ("s-add", "add", 1, "md5", "ab" * 16, 90, '["x"]', None),
                ("s-remove", "remove", 2, None, None, None, None, "withdrawn"),
            ]
        migrate.downgrade(url, "0012_batch_stored_once")
        with engine.connect() as conn:
            assert {c["name"] for c in inspect(conn).get_columns("pending_changes")} == {
                "collection_id", "signal_id", "op", "audit_seq"
            }
            assert len(conn.execute(text("SELECT signal_id FROM pending_changes")).all()) == 2
    finally:
        engine.dispose()
        drop_database(handle)


def test_pending_changes_without_their_entries_are_filled_then_refused(database, tmp_path):
    """0015 fills the copies of pending rows written without them (before 0013's code ran everywhere) from their
    signals, then checks that every row carries its entry; its downgrade drops the check and keeps the rows."""
    from datetime import UTC, datetime

    import pytest
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    url, handle = create_database(migrate_to="0014_resign_in_place")
    engine = make_engine(url)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    pending = "SELECT signal_id, op, audit_seq, type, value, quality, tags, reason FROM pending_changes"
    try:
        with engine.begin() as conn:
            for sid, value, quality, tags, reason in (
                ("s-add", "ab" * 16, 90, '["x"]', None),
                ("s-remove", "cd" * 16, None, None, "false positive"),
                ("s-remove-no-reason", "ef" * 16, None, None, None),
                ("s-carried", "01" * 16, None, None, None),
            ):
                _insert_signal(conn, sid, value, quality, tags, reason, t0)
            conn.execute(
                text(
                    "INSERT INTO pending_changes (collection_id, signal_id, op, audit_seq, type, value) VALUES"
                    " ('c', 's-add', 'add', 1, NULL, NULL), ('c', 's-remove', 'remove', 2, NULL, NULL),"
                    " ('c', 's-remove-no-reason', 'remove', 3, NULL, NULL), ('c', 's-carried', 'add', 4, 'md5', :v)"
                ),
                {"v": "01" * 16},
            )
        migrate.upgrade(url, "0015_pending_entries_required")
        with engine.connect() as conn:
            assert sorted(tuple(r) for r in conn.execute(text(pending))) == [
                ("s-add", "add", 1, "md5", "ab" * 16, 90, '["x"]', None),
                ("s-carried", "add", 4, "md5", "01" * 16, None, None, None),
                ("s-remove", "remove", 2, None, None, None, None, "false positive"),
                ("s-remove-no-reason", "remove", 3, None, None, None, None, "withdrawn"),
            ]
            with pytest.raises(IntegrityError, match="ck_pending_changes_entry"):
                conn.execute(text("UPDATE pending_changes SET type = NULL WHERE signal_id = 's-add'"))
            conn.rollback()
        migrate.downgrade(url, "0014_resign_in_place")
        with engine.begin() as conn:
            conn.execute(text("UPDATE pending_changes SET type = NULL WHERE signal_id = 's-add'"))
            assert len(conn.execute(text(pending)).all()) == 4
    finally:
        engine.dispose()
        drop_database(handle)


def test_pending_changes_whose_signal_is_gone_stop_the_migration(database, tmp_path):
    """A pending row with no copy and no signal cannot be sealed: 0015 refuses to run and changes nothing."""
    import pytest
    from sqlalchemy import text

    url, handle = create_database(migrate_to="0014_resign_in_place")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO pending_changes (collection_id, signal_id, op, audit_seq) VALUES"
                              " ('c', 's-gone', 'add', 1)"))
        with pytest.raises(RuntimeError, match="s-gone"):
            migrate.upgrade(url, "0015_pending_entries_required")
        assert migrate.current_revisions(engine) == ("0014_resign_in_place",)
    finally:
        engine.dispose()
        drop_database(handle)
