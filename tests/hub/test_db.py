"""Engine wiring on PostgreSQL: pooled connections idle past the window are pinged, busy ones are not."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from hub import db
from hub.db import make_engine
from tests.conftest import admin_url


@pytest.fixture
def engine():
    engine = make_engine(admin_url(), pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def _backend_pid(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(pid: int) -> None:
    admin = make_engine(admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
            # Wait until the server has closed it, so the next checkout meets a dead socket.
            conn.execute(text("SELECT pg_sleep(0.2)"))
    finally:
        admin.dispose()


def test_a_connection_idle_past_the_window_is_pinged_and_replaced(engine, monkeypatch):
    pid = _backend_pid(engine)
    _terminate(pid)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
    # The checkout pings the dead connection, the pool reconnects, and the caller never sees the loss.
    assert _backend_pid(engine) != pid


def test_a_recently_used_connection_is_not_pinged(engine, monkeypatch):
    pid = _backend_pid(engine)
    _terminate(pid)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 3600.0)
    # Within the window the connection is handed out unchecked: its first statement fails ...
    with pytest.raises(OperationalError), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    # ... and SQLAlchemy has invalidated it, so the next checkout reconnects.
    assert _backend_pid(engine) != pid


def test_a_new_connection_is_not_pinged(engine):
    pings = []
    real = engine.dialect.do_ping
    engine.dialect.do_ping = lambda conn: pings.append(conn) or real(conn)
    try:
        _backend_pid(engine)
        _backend_pid(engine)
    finally:
        engine.dialect.do_ping = real
    assert pings == []
