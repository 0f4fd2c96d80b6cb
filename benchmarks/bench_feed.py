"""Feed benchmark on PostgreSQL: ingest N PDQ hashes in requests of 10,000, seal them, fetch the feed.

    .venv/bin/python benchmarks/bench_feed.py [--count 1000000] [--verify] [--server embedded|external [--url URL]]

Runs on a scratch database of the embedded PostgreSQL (a private server it starts) or of an external server
(`--url`, default HASHFED_BENCH_POSTGRES_URL or postgresql://root@127.0.0.1:5432/postgres), dropped afterwards
(benchmarks/servers.py). Like the serving hub, it connects as the role `hashfed_app`, which owns no table and is
subject to row-level security. Requests go through the Flask test client (the whole app: auth, parsing,
validation, the service, the commit); sealing runs the scheduler's job function; the new partner pages through
`/batches` with `limit=20`. Prints rates, bytes on the wire per hash, and the WAL written and checkpoints
started while sealing (both the whole server's: another job's writes count too).
"""

from __future__ import annotations

import argparse
import gzip
import json
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


import servers
from servers import loadavg
from sqlalchemy import text

from hub import rls
from hub.app import create_app
from hub.ops import jobs
from hub.transparency import keys
from hub.transparency.keys import HubKeys
from tests.hub import factories
from tests.hub import feedkit as kit
from tests.hub.auditkit import make_hub_keys


def _wal_and_checkpoints(engine: Any) -> tuple[int, int]:
    """The server's WAL position (bytes) and how many checkpoints it has started: a seal's time depends on
    the checkpoints that fall inside it (each is followed by full-page images of the pages touched next)."""
    with engine.connect() as conn:
        # PostgreSQL 17 moved the checkpoint counters from pg_stat_bgwriter to pg_stat_checkpointer.
        counters = (
            "num_timed + num_requested FROM pg_stat_checkpointer"
            if conn.dialect.server_version_info >= (17,)
            else "checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
        )
        row = conn.execute(text(f"SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, {counters}")).one()
    return int(row[0]), int(row[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--per-request", type=int, default=10_000)
    ap.add_argument(
        "--verify", action="store_true", help="also verify every envelope with audit (client cost)"
    )
    servers.add_arguments(ap)
    args = ap.parse_args()

    with servers.hub_database(args) as hub:
        settings, engine, factory = hub.settings, hub.engine, hub.factory
        with factory.begin() as s:
            rls.set_tenant(s, rls.SYSTEM)
            hk, _root = make_hub_keys(s, settings)
            owner = kit.partner(s, "contributor")
            reader = kit.partner(s, "new-partner")
            c = kit.collection(s, hk, owner)
            kit.grant(s, hk, c, reader)
            write = factories.auth(factories.token(s, owner, ["hashes:write"], ttl_s=86400))
            read = factories.auth(factories.token(s, reader, ["feed:read"], ttl_s=86400))
            cid = c.id
            pinned = keys.latest_record(s).payload_sha256
        app = create_app(settings, engine=engine)
        client = app.test_client()

        # ingest: the hub's time only (each request body is made before its clock starts)
        sent = 0
        ingest = 0.0
        while sent < args.count:
            n = min(args.per_request, args.count - sent)
            body = json.dumps(
                {"signals": [{"type": "pdq", "value": secrets.token_hex(32), "quality": 90} for _ in range(n)]}
            )
            t0 = time.perf_counter()
            r = client.post(
                f"/v1/collections/{cid}/signals",
                data=body,
                headers={**write, "Content-Type": "application/json"},
            )
            ingest += time.perf_counter() - t0
            if r.status_code != 201:
                raise SystemExit(f"submit failed: {r.status_code} {r.get_data()[:300]!r}")
            sent += n
            if sent % 100_000 == 0:
                print(f"  ingested {sent:,}: {sent / ingest:,.0f} hashes/s so far", flush=True)
        print(
            f"ingest : {sent:,} hashes in {ingest:.1f} s = {sent / ingest:,.0f} hashes/s "
            f"({args.per_request:,} per request)"
        )

        # seal
        with factory() as s:
            rls.set_tenant(s, rls.SYSTEM)
            hk = HubKeys.load(settings, s)
        wal_before = _wal_and_checkpoints(engine)
        t0 = time.perf_counter()
        sealed = jobs.seal_pending(factory, datetime.now(UTC), keys=hk, settings=settings)
        seal = time.perf_counter() - t0
        wal_after = _wal_and_checkpoints(engine)
        size = sealed[0].size
        print(
            f"seal   : {sealed[0].adds:,} hashes into {size} batches in {seal:.1f} s = "
            f"{sealed[0].adds / seal:,.0f} hashes/s; {(wal_after[0] - wal_before[0]) / 1e6:,.0f} MB of WAL "
            f"(the whole server's), {wal_after[1] - wal_before[1]} checkpoint(s) started meanwhile"
        )

        # fetch as a new partner
        wire = 0
        since = 0
        t0 = time.perf_counter()
        pages = []
        while since < size:
            r = client.get(f"/v1/collections/{cid}/batches?since_size={since}&limit=20", headers=read)
            data = r.get_data()
            wire += len(data)
            page = json.loads(data)
            since += len(page["batches"])
            if args.verify:
                pages.append(page)
        fetch = time.perf_counter() - t0
        print(
            f"fetch  : {sent:,} hashes in {fetch:.1f} s = {sent / fetch:,.0f} hashes/s, "
            f"{wire / sent:.1f} bytes on the wire per hash (uncompressed)"
        )
        targets = {"ingest": 20_000, "seal": 100_000, "fetch": 100_000}  # hashes/s, issue 6
        rows = [("ingest", sent, ingest), ("seal", sealed[0].adds, seal), ("fetch", sent, fetch)]

        r = client.get(f"/v1/collections/{cid}/batches/1", headers=read)
        one = r.get_data()
        zipped = len(gzip.compress(one, 6))
        per = min(sent, settings.max_batch_entries)
        print(f"gzip   : batch 1 {len(one):,} B -> {zipped:,} B gzip = {zipped / per:.1f} B/hash")
        if args.verify:
            from tests.hub.protocol_client import FeedClient, Mirror

            feed = FeedClient(client, read["Authorization"].split()[1], pinned)
            now = datetime.now(UTC)
            feed.load_keys(now)
            t0 = time.perf_counter()
            mirror = feed.sync(cid, Mirror(), "bench.test", now, limit=20)
            verify = time.perf_counter() - t0
            print(
                f"verify : fetch + verify + apply {len(mirror.signals):,} in {verify:.1f} s = "
                f"{len(mirror.signals) / verify:,.0f} hashes/s (client side, audit primitives)"
            )
        print(f"loadavg at end: {loadavg()}")
        print("| phase  | hashes    | seconds | hashes/s  | target    | met |")
        print("| ------ | --------- | ------- | --------- | --------- | --- |")
        for phase, n, secs in rows:
            rate, target = n / secs, targets[phase]
            met = "yes" if rate >= target else "no"
            print(f"| {phase:<6} | {n:>9,} | {secs:>7.1f} | {rate:>9,.0f} | {target:>9,} | {met:<3} |")
        print(f"| wire   | {wire / sent:.1f} B/hash uncompressed, {zipped / per:.1f} B/hash gzip (batch 1) |")


if __name__ == "__main__":
    main()
