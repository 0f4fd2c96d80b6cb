"""Early lock release of audited commits on PostgreSQL: when a commit may give up the audit lock before its
WAL flush, and that the session's commit returns only after a synchronous flush behind it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from hub import rls
from hub.config import Settings
from hub.db import AWAIT_DURABLE, make_engine, make_session_factory
from hub.feed import signals
from hub.identity.models import Partner
from hub.ops import embedded, migrate
from hub.transparency.auditlog import Actor, record
from hub.transparency.models import AuditEntry, AuditNode
from tests.conftest import Database, app_url, grant
from tests.hub import feedkit as kit

ACTOR = Actor(type="partner", partner="p1", client="c1")


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[embedded.EmbeddedPostgres]:
    """A PostgreSQL of this module's own: the tests count transaction ids, which are server-wide, so no other
    client (another test run on a shared server, autovacuum) may take any meanwhile."""
    server = embedded.start(tmp_path_factory.mktemp("durability"))
    engine = make_engine(server.superuser_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("ALTER SYSTEM SET autovacuum = off"))
        conn.execute(text("SELECT pg_reload_conf()"))
    engine.dispose()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg(private_server: embedded.EmbeddedPostgres) -> Iterator[Database]:
    name = f"durability_{secrets.token_hex(4)}"
    admin = make_engine(private_server.superuser_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    owner_url = private_server.url("postgres", name)
    migrate.upgrade(owner_url)
    grant(owner_url)
    engine = make_engine(app_url(owner_url))
    try:
        yield Database(name, owner_url, app_url(owner_url), engine)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def xids(pg):
    """Transaction ids handed out so far on the module's private server (nothing else runs there)."""
    engine = make_engine(pg.url)

    def count() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")).scalar_one())

    yield count
    engine.dispose()


def _commit_mode(factory) -> str | None:
    with factory() as s:  # the pool hands back the connection that committed: the setting is per connection
        return s.execute(text("SELECT current_setting('hashfed.commit_mode', true)")).scalar_one()


def test_an_audited_commit_releases_early_and_is_flushed_before_commit_returns(pg, xids):
    factory = make_session_factory(pg.engine)
    before = xids()
    with factory.begin() as s:
        record(s, ACTOR, "signals.submit", "collection/c1", {"count": 1})
    # Two transactions with an id: the audited one, then the synchronous commit that flushed the WAL behind it.
    assert xids() - before == 2
    assert _commit_mode(factory) == "early"
    with factory() as s:
        assert s.query(AuditEntry).count() == 1
        assert AWAIT_DURABLE not in s.info


def test_a_commit_that_publishes_a_signed_statement_stays_synchronous(pg):
    factory = make_session_factory(pg.engine)
    with factory.begin() as s:
        record(s, ACTOR, "signals.submit", "collection/c1", {"count": 1})
    assert _commit_mode(factory) == "early"
    with factory.begin() as s:
        record(s, Actor.system("test"), "audit.checkpoint", "audit/1")
        s.add(AuditNode(level=0, idx=0, hash=bytes(32)))  # a table that proofs and checkpoints are built from
    assert _commit_mode(factory) == "synchronous"
    # Publishing first and recording after decides the same way: the decision is taken at COMMIT.
    with factory.begin() as s:
        s.add(AuditNode(level=0, idx=1, hash=bytes(32)))
        s.flush()
        record(s, Actor.system("test"), "audit.checkpoint", "audit/2")
    assert _commit_mode(factory) == "synchronous"


def test_sessions_without_early_release_commit_synchronously(pg, xids):
    factory = make_session_factory(pg.engine, early_release=False)
    before = xids()
    with factory.begin() as s:
        record(s, ACTOR, "signals.submit", "collection/c1", {"count": 1})
    assert xids() - before == 1
    assert _commit_mode(factory) is None


def test_a_rolled_back_entry_needs_no_flush_and_leaves_no_gap(pg, xids):
    factory = make_session_factory(pg.engine)
    with factory() as s:
        s.begin()
        record(s, ACTOR, "signals.submit", "collection/c1", {"count": 1})
        s.rollback()
        before = xids()
        s.begin()
        s.execute(text("SELECT 1"))
        s.commit()  # nothing recorded in this transaction: no flush
        assert xids() == before
        s.begin()
        rec = record(s, ACTOR, "signals.submit", "collection/c1", {"count": 2})
        s.commit()
    assert rec.seq == 0
    assert xids() - before == 2


def test_an_entry_recorded_in_a_savepoint_is_flushed_once_at_the_outer_commit(pg, xids):
    factory = make_session_factory(pg.engine)
    before = xids()
    with factory.begin() as s:
        with s.begin_nested():
            record(s, ACTOR, "signals.submit", "collection/c1", {"count": 1})
        assert AWAIT_DURABLE in s.info  # releasing the savepoint is not the commit
    # The transaction, the savepoint's subtransaction (it wrote), and one flush after the outer commit.
    assert xids() - before == 3
    assert _commit_mode(factory) == "early"


# Every table holding a signed statement served to partners or regulators, or the tree nodes its proofs are
# built from: a transaction writing one of them must never commit before its flush.
PUBLISHING = {
    "audit_nodes",
    "audit_checkpoints",
    "batches",
    "collection_nodes",
    "collection_checkpoints",
    "collection_heads",
    "collections",
    "key_sets",
}


def test_every_publishing_table_forces_a_synchronous_commit(pg):
    with pg.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE t.tgname LIKE '%\\_publishing' OR t.tgname = 'audit_entries_commit_durability'"
            )
        ).all()
    marked = {table for table, name, enabled in rows if name == f"{table}_publishing" and enabled == "A"}
    assert marked == PUBLISHING
    assert ("audit_entries", "audit_entries_commit_durability", "A") in [tuple(r) for r in rows]


def test_an_idempotent_replay_is_answered_only_after_a_flush(pg, xids, tmp_path):
    """A replay acknowledges another request's write, which may have released the audit lock before its
    flush: the replay's own commit flushes the WAL behind it, as an audited commit does."""
    settings = Settings(var_dir=tmp_path / "var", database_url=pg.app_url, hub_name="hub.test")
    factory = make_session_factory(pg.engine)
    with factory.begin() as s:
        rls.set_tenant(s, rls.SYSTEM)
        keys = kit.hub_keys(s, settings)
        owner = kit.partner(s, "owner")
        collection_id, owner_id = kit.collection(s, keys, owner).id, owner.id
    items = [{"type": "md5", "value": "ab" * 16}]

    def submit(s):
        rls.set_tenant(s, rls.SYSTEM)
        return signals.submit(s, collection_id=collection_id, partner_id=owner_id, items=items,
                              actor=kit.actor_of(s.get(Partner, owner_id)), idempotency_key="k-1",
                              request_sha256="0" * 64, now=kit.T0)

    with factory.begin() as s:
        first = submit(s)
    before = xids()
    with factory.begin() as s:
        again = submit(s)
        assert again.replayed and again.body == first.body
        assert AWAIT_DURABLE in s.info  # the commit below is followed by the flush
    assert xids() - before == 1  # nothing written: the one transaction id is the flush's
