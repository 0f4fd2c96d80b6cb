"""Reports benchmark on PostgreSQL: N reports in requests of 1,000, each request one audit entry.

    .venv/bin/python benchmarks/bench_reports.py [--count 100000] [--per-request 1000] [--signals 10000]
        [--server embedded|external [--url URL]]

Runs on a scratch database of the embedded PostgreSQL (a private server it starts) or of an external server
(`--url`, default HASHFED_BENCH_POSTGRES_URL or postgresql://root@127.0.0.1:5432/postgres), dropped afterwards
(benchmarks/servers.py); connects as the application role (row-level security on, as in production).
Requests go through the Flask test client: auth, parsing, validation against signals, collection heads
and earlier reports, the canonical JSON digest of every report, the audit entry and the commit.
Then it changes the outcome of 1,000 reports one PATCH each. Prints rates and per-request latencies.
Target: POST >= 2,000 reports/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers
from servers import loadavg
from sqlalchemy import func, select

from hub import rls
from hub.app import create_app
from hub.reports.models import Report
from hub.transparency.models import AuditEntry
from tests.hub import factories, reportkit
from tests.hub import feedkit as kit


def _t(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--per-request", type=int, default=1000)
    ap.add_argument("--signals", type=int, default=10_000)
    ap.add_argument("--patches", type=int, default=1000)
    servers.add_arguments(ap)
    args = ap.parse_args()

    with servers.hub_database(args) as hub:
        settings, engine, factory = hub.settings, hub.engine, hub.factory
        with factory.begin() as s:
            rls.set_tenant(s, rls.SYSTEM)
            hk = kit.hub_keys(s, settings)
            owner = kit.partner(s, "contributor")
            reporter = factories.partner(s, name="reporter")
            c = kit.collection(s, hk, owner)
            ids: list[str] = []
            for start in range(0, args.signals, 10_000):
                n = min(10_000, args.signals - start)
                ids += kit.submit(s, c, owner, [{"type": "pdq", "value": kit.pdq()} for _ in range(n)]).body["ids"]
            kit.seal(s, hk)
            reportkit.grant(s, hk, c, reporter)
            headers = factories.auth(factories.token(s, reporter, ["reports:write"], ttl_s=86400))
            cid = c.id
        app = create_app(settings, engine=engine)
        client = app.test_client()
        matched = _t(datetime.now(UTC) - timedelta(hours=1))

        def body(start: int, n: int) -> dict[str, object]:
            return {
                "reports": [
                    {
                        "id": f"r-{i:08d}",
                        "signal": {"id": ids[i % len(ids)]},
                        "collection": cid,
                        "seq": 1,
                        "distance": i % 32,
                        "outcome": "pending_review",
                        "matched_at": matched,
                        "automated_detection": True,
                        "automated_decision": True,
                        "surface": "upload",
                        "content_ref": f"post-{i}",
                    }
                    for i in range(start, start + n)
                ]
            }

        bodies = [body(start, min(args.per_request, args.count - start))
                  for start in range(0, args.count, args.per_request)]
        latencies: list[float] = []
        began = time.perf_counter()
        for b in bodies:
            t0 = time.perf_counter()
            r = client.post("/v1/reports", json=b, headers=headers)
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 201:
                raise SystemExit(f"POST answered {r.status_code}: {r.get_data(as_text=True)[:500]}")
        elapsed = time.perf_counter() - began
        print(f"POST  {args.count:,} reports in {len(bodies)} requests of {args.per_request:,}: "
              f"{elapsed:.2f} s, {args.count / elapsed:,.0f} reports/s")
        latencies.sort()
        print(f"      per request: p50 {statistics.median(latencies) * 1000:.0f} ms, "
              f"p95 {latencies[int(len(latencies) * 0.95) - 1] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")

        t0 = time.perf_counter()
        r = client.post("/v1/reports", json=bodies[0], headers=headers)
        assert r.status_code == 200 and r.json["replayed"] == len(bodies[0]["reports"])  # type: ignore[arg-type]
        print(f"      replay of one request of {args.per_request:,}: {(time.perf_counter() - t0) * 1000:.0f} ms")

        actioned = _t(datetime.now(UTC))
        patches = min(args.patches, args.count)
        t0 = time.perf_counter()
        for i in range(patches):
            r = client.patch(
                f"/v1/reports/r-{i:08d}",
                json={"outcome": "removed", "actioned_at": actioned, "automated_decision": False},
                headers=headers,
            )
            if r.status_code != 200:
                raise SystemExit(f"PATCH answered {r.status_code}: {r.get_data(as_text=True)[:500]}")
        elapsed = time.perf_counter() - t0
        print(f"PATCH {patches:,} outcome changes, one request each: {elapsed:.2f} s, {patches / elapsed:,.0f}/s")

        t0 = time.perf_counter()
        r = client.get("/v1/reports?limit=1000&outcome=removed", headers=headers)
        print(f"GET   a page of 1,000 filtered by outcome: {(time.perf_counter() - t0) * 1000:.0f} ms")

        with factory.begin() as s:
            rls.set_tenant(s, rls.SYSTEM)
            reports = s.scalar(select(func.count()).select_from(Report))
            entries = s.scalar(select(func.count()).select_from(AuditEntry))
            size = s.scalar(select(func.sum(func.length(AuditEntry.entry))))
        print(f"      {reports:,} reports, {entries:,} audit entries, {int(size or 0) / 1e6:.1f} MB of entries")
        print(f"loadavg at end: {loadavg()}")


if __name__ == "__main__":
    main()
