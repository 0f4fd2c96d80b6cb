"""Database wiring: the declarative base, PostgreSQL engines and session factories."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

# Constraint names are fixed so that migrations and the models agree.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every hub table."""

    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, always handed back in UTC (the server's session time zone may differ)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def normalize_url(url: str) -> str:
    """Pin the PostgreSQL driver to psycopg2 (SQLAlchemy 2.1 would pick psycopg 3 for `postgresql://`)."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for the PostgreSQL at `url`; idle pooled connections are pinged before use."""
    engine = create_engine(normalize_url(url), **kwargs)
    if not kwargs.get("pool_pre_ping") and kwargs.get("poolclass") is None:
        _ping_idle_connections(engine)
    return engine


# A pooled connection unused for this long is pinged before it is handed out. One used more recently is
# handed out as it is (HikariCP's "alive bypass window"): under load every checkout would otherwise cost a
# round trip (SQLAlchemy's pool_pre_ping), and a connection that worked a moment ago is very likely alive.
PING_AFTER_IDLE_S = 1.0
_CHECKED_IN = "hashfed_checked_in"


def _ping_idle_connections(engine: Engine) -> None:
    """Pessimistic disconnect handling for connections idle longer than PING_AFTER_IDLE_S (SQLAlchemy's
    documented recipe: a checkout handler that raises DisconnectionError makes the pool reconnect). A
    connection that breaks within the window fails its request once; SQLAlchemy then invalidates the pool,
    so the next checkout reconnects."""

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_conn: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()  # a new connection needs no ping

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN)
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as e:
            raise exc.DisconnectionError(f"database connection lost while idle: {e}") from e


# Session.info keys of the audit log's early lock release (PostgreSQL; hub.transparency.auditlog.record,
# docs/operations.md).
# EARLY_RELEASE: this session's audited commits may release the audit lock before their WAL flush.
# AWAIT_DURABLE: set by `record`: (root transaction, DBAPI connection) whose commit must be made durable
# before the session's commit returns.
EARLY_RELEASE = "hashfed_early_release"
AWAIT_DURABLE = "hashfed_await_durable"

# A transaction commits synchronously only if it has an xid and wrote WAL before its commit record
# (xact.c RecordTransactionCommit); an xid alone gives an asynchronous commit that flushes nothing. A
# transactional logical message takes an xid and writes one small WAL record (no table, no dead row), so its
# commit flushes the WAL through its own commit record and with it everything before, among them the
# early-released commit of the same connection. One statement is one transaction: one round trip.
_FLUSH = "SELECT pg_logical_emit_message(true, 'hashfed.flush', '')"


class CommitDurabilityError(exc.SQLAlchemyError):
    """A commit went through but could not be confirmed durable: its outcome after a crash is unknown."""


def make_session_factory(engine: Engine, *, early_release: bool = True) -> sessionmaker[Session]:
    """Sessions for `engine`. With `early_release` (the default), an audited commit on PostgreSQL gives up
    the audit lock before its WAL flush, and the commit waits for durability after (`_await_durable`)."""
    factory = sessionmaker(bind=engine, expire_on_commit=False, info={EARLY_RELEASE: early_release})
    event.listen(factory, "after_commit", _await_durable)
    return factory


def durable_before_answering(session: Session) -> None:
    """Flush the WAL after this transaction's commit, as after an audited one, though it writes nothing.

    For an answer that acknowledges another transaction's write (an idempotent replay): that commit may have
    released the audit lock early and be visible before it is on disk, and the replay must not acknowledge it
    sooner than its own request does. The flush covers every commit before it in the WAL.
    """
    dbapi = session.connection().connection.dbapi_connection
    if dbapi is not None and session.info.get(EARLY_RELEASE):
        session.info.setdefault(AWAIT_DURABLE, (session.get_transaction(), dbapi))


def _await_durable(session: Session) -> None:
    """After a commit that released the audit lock early, flush the WAL through it before returning.

    `hub.transparency.auditlog.record` asks for early release; unless the transaction also published a signed statement,
    the database commits it with `synchronous_commit = off` (migration 0011): the lock on the next audit seq
    is released as soon as the commit record is written, not after its fsync, so the next writer's entry
    does not wait for this one's flush and flushes can be shared. Nothing has been reported to anyone yet:
    the caller's `commit()` returns only after `_FLUSH`, a synchronous commit on the same connection whose
    WAL flush (and synchronous standby wait, if any) covers the early commit's record, so a commit is
    acknowledged only once durable. A crash before the flush loses this transaction and every later one (the
    WAL is replayed as a prefix), never an earlier one, so the audit log stays gapless.
    """
    pending = session.info.get(AWAIT_DURABLE)
    if pending is None:
        return
    root = session.get_transaction()
    if root is not None and root.is_active:
        return  # a savepoint was released; the transaction goes on
    del session.info[AWAIT_DURABLE]
    recorded_in, dbapi = pending
    if recorded_in is not root:
        return  # the recording transaction was rolled back: nothing of it was committed
    try:
        dbapi.autocommit = True
        try:
            cursor = dbapi.cursor()
            try:
                cursor.execute(_FLUSH)
            finally:
                cursor.close()
        finally:
            dbapi.autocommit = False
    except Exception as e:
        raise CommitDurabilityError(
            f"the transaction committed but its flush to disk could not be confirmed: {e}"
        ) from e
