"""A 201 is durable: a submission acknowledged just before a database crash is there after recovery.

The test runs its own PostgreSQL cluster, made with initdb in a temporary folder, so that it may crash it
(`pg_ctl stop -m immediate`: no shutdown checkpoint, WAL buffers not written) and start it again. The WAL
writer is slowed down (`wal_writer_delay`, `wal_writer_flush_after`) so that a commit the hub did not flush
itself stays unflushed: only the request's own flush can make its rows survive.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from hub.app import create_app
from hub.config import Settings
from hub.db import make_engine, make_session_factory
from hub.feed.models import Signal
from hub.ops import migrate
from hub.transparency.models import AuditEntry
from tests.conftest import BASE_URL, app_url, grant
from tests.hub import factories
from tests.hub import feedkit as kit
from tests.pgcluster import Cluster

CRASHES = 5
# Few enough that a request's WAL (about 2 KiB plus 1 KiB per signal) stays within one 8 KiB WAL page.
SIGNALS_PER_REQUEST = 2

# Durability as in production (fsync, synchronous commits); nothing else flushes the WAL behind a request:
# the WAL writer runs rarely and flushes little, no autovacuum and no standby snapshots (wal_level minimal)
# write WAL of their own, and without full-page images a request's WAL fits in the page the test starts it
# on, so it never completes a page (which would wake the WAL writer, xlog.c XLogSetAsyncXactLSN). A process
# crash tears no page, so full_page_writes may be off here.
SERVER_SETTINGS = {
    "listen_addresses": "''",
    "fsync": "on",
    "synchronous_commit": "on",
    "wal_writer_delay": "10s",
    "wal_writer_flush_after": "1GB",
    "autovacuum": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "full_page_writes": "off",
}


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster.make(SERVER_SETTINGS, prefix="hashfed-crash-")
    try:
        c.init()
        yield c
    finally:
        c.remove()


@pytest.mark.postgres_only
@pytest.mark.slow
def test_an_acknowledged_submission_survives_a_crash(cluster: Cluster, tmp_path: Path) -> None:
    owner_url = cluster.url()
    migrate.upgrade(owner_url, "heads")
    grant(owner_url)
    url = app_url(owner_url)
    settings = Settings(var_dir=tmp_path / "var", database_url=url, base_url=BASE_URL, hub_name="hub.test")
    engine = make_engine(url)
    owner = make_engine(owner_url)  # reads every row (no row-level security) after each recovery
    try:
        with make_session_factory(engine).begin() as s:
            keys = kit.hub_keys(s, settings)
            partner = kit.partner(s, "crash")
            collection = kit.collection(s, keys, partner, types=("md5",))
            auth = factories.auth(factories.token(s, partner, ["hashes:write"], ttl_s=3600))
        client = create_app(settings, engine=engine).test_client()
        lost = []
        for attempt in range(CRASHES):
            body = {"signals": [{"type": "md5", "value": os.urandom(16).hex()} for _ in range(SIGNALS_PER_REQUEST)]}
            headers = {**auth, "Idempotency-Key": f"crash-{attempt}"}
            path = f"/v1/collections/{collection.id}/signals"
            with owner.connect() as conn:
                # Flushed up to the start of a fresh WAL segment: the request's WAL begins on a new page.
                conn.execute(text("SELECT pg_switch_wal()"))
            response = client.post(path, json=body, headers=headers)
            assert response.status_code == 201, response.get_json()
            receipt = response.get_json()
            cluster.crash()
            cluster.start()
            engine.dispose()  # the pool's connections died with the server
            owner.dispose()
            with owner.connect() as conn:
                kept = set(conn.scalars(select(Signal.id).where(Signal.id.in_(receipt["ids"]))))
                entry = conn.scalar(select(AuditEntry.entry).where(AuditEntry.seq == receipt["audit_seq"]))
            if len(kept) != SIGNALS_PER_REQUEST or entry is None:
                lost.append(f"audit_seq {receipt['audit_seq']}: {len(kept)} signals, entry {entry is not None}")
                continue
            assert f'"subject":"collection/{collection.id}"'.encode() in bytes(entry)
            # The partner retrying its acknowledged request gets the same receipt, never a second seq.
            again = client.post(path, json=body, headers=headers)
            assert again.status_code == 201 and again.get_json() == receipt
            assert again.headers["Idempotency-Replayed"] == "true"
        assert lost == [], f"acknowledged submissions lost in {len(lost)} of {CRASHES} crashes"
        with owner.connect() as conn:
            seqs = list(conn.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)))
        assert seqs == list(range(len(seqs)))
    finally:
        engine.dispose()
        owner.dispose()

