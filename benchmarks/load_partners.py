"""100 partners syncing and reporting while intake partners submit and the scheduler seals.

A private PostgreSQL cluster, `hashfed serve` (gunicorn, as the application role) and `hashfed scheduler`
(benchmarks/fault_stack.py). Each partner is an OAuth client with the partner kit's sync library in this
process (its own SQLite mirror, every request the kit makes: key sets, checkpoint, snapshot or batches, ack)
and syncs every --sync-interval seconds and posts one report every --report-interval seconds, each partner
starting at a random offset; intake threads submit signals with Idempotency-Keys back to back. For
--seconds the load runs and every request is timed; then the load stops, the scheduler seals the rest, every
partner syncs once more, and the state is checked:
  - every acknowledged submission's signals and every acknowledged report are in the database;
  - every partner's last ack (its `feed.ack` audit entry) is at the collection's head, and its mirror holds
    exactly the collection's active signals.
It prints throughput, p50/p99 latency and count per route, errors by status, and the checks; exits 1 if a
check fails.

    .venv/bin/python benchmarks/load_partners.py [--seconds 60] [--partners 100] [--workers 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests
from fault_crash import Kit, seed, wait_until_settled
from fault_stack import Client, Stack, token
from sqlalchemy import text

from hub.db import make_engine
from partners.client.transport import Response, Transport

_ID = re.compile(r"^(?=.*\d)[0-9A-Za-z_-]{8,}$|^\d+$")


def route(method: str, path: str) -> str:
    """The route of a path: ids and numbers become placeholders."""
    return method + " " + "/".join("{}" if _ID.match(part) else part for part in path.split("?")[0].split("/"))


class Timings:
    """Latency and status of every request, by route, inside the measured window."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, Counter[str]] = defaultdict(Counter)
        self.measuring = True

    def add(self, name: str, seconds: float, status: str) -> None:
        if not self.measuring:
            return
        with self.lock:
            self.latency[name].append(seconds)
            self.statuses[name][status] += 1


class TimedTransport(Transport):
    def __init__(self, inner: Transport, timings: Timings) -> None:
        self.inner, self.timings = inner, timings

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json_body: Any = None,
                max_bytes: int) -> Response:
        t0 = time.perf_counter()
        status = "error"
        try:
            r = self.inner.request(method, path, params=params, json_body=json_body, max_bytes=max_bytes)
            status = str(r.status)
            return r
        finally:
            self.timings.add(route(method, path), time.perf_counter() - t0, status)


def timed_post(http: requests.Session, timings: Timings, base: str, path: str, name: str, **kw: Any) -> Any:
    t0 = time.perf_counter()
    try:
        r = http.post(f"{base}{path}", timeout=60, **kw)
    except requests.RequestException as e:
        timings.add(name, time.perf_counter() - t0, type(e).__name__)
        return None
    timings.add(name, time.perf_counter() - t0, str(r.status_code))
    return r


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000 if s else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60, help="how long the measured load runs")
    ap.add_argument("--partners", type=int, default=100)
    ap.add_argument("--submitters", type=int, default=4, help="intake threads submitting back to back")
    ap.add_argument("--signals-per-request", type=int, default=20)
    ap.add_argument("--sync-interval", type=float, default=10.0, help="seconds between a partner's syncs")
    ap.add_argument("--report-interval", type=float, default=10.0, help="seconds between a partner's reports")
    ap.add_argument("--seal-interval", type=int, default=5, help="the scheduler's HASHFED_SEAL_INTERVAL_S")
    ap.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    ap.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hashfed-load-"))
    stack = Stack(work, workers=args.workers, threads=args.threads, seal_interval_s=args.seal_interval,
                  checkpoint_interval_s=5)
    timings = Timings()
    acked: list[tuple[str, list[str], list[str]]] = []  # (kind, ids, values)
    acked_lock = threading.Lock()
    stop = threading.Event()
    try:
        stack.create()
        cid, writers, readers = stack.provision(contributors=2, readers=args.partners)
        stack.start_hub()
        stack.scheduler.start()
        seeds = seed(stack, cid, writers[0], 50)
        pin = stack.pin()
        kits = [Kit(stack, c, pin, work / f"kit-{i}", wrap=lambda t: TimedTransport(t, timings))
                for i, c in enumerate(readers)]
        print(f"load_partners: {args.partners} partners (sync every {args.sync_interval:g} s, report every "
              f"{args.report_interval:g} s), {args.submitters} intake threads ({args.signals_per_request} signals "
              f"per request), seal every {args.seal_interval} s, gunicorn {args.workers}x{args.threads}, "
              f"{stack.cluster.version()}, {args.seconds} s")

        def submitter(n: int, client: Client) -> None:
            http, tok, i = requests.Session(), "", 0
            while not stop.is_set():
                if not tok:
                    tok = token(stack.base_url, client, "hashes:write", http)
                values = [os.urandom(16).hex() for _ in range(args.signals_per_request)]
                body = {"signals": [{"type": "md5", "value": v} for v in values]}
                r = timed_post(http, timings, stack.base_url, f"/v1/collections/{cid}/signals",
                               "POST /v1/collections/{}/signals", json=body,
                               headers={"Authorization": f"Bearer {tok}", "Idempotency-Key": f"load-{n}-{i}"})
                i += 1
                if r is not None and r.status_code == 201:
                    with acked_lock:
                        acked.append(("signals", list(r.json()["ids"]), values))
                elif r is not None and r.status_code == 401:
                    tok = ""

        def partner(n: int, client: Client, kit: Kit) -> None:
            http, tok, i = requests.Session(), "", 0
            rng = random.Random(n)
            next_sync = time.monotonic() + rng.uniform(0, args.sync_interval)
            next_report = time.monotonic() + rng.uniform(0, args.report_interval)
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_sync:
                    kit.sync(attempts=1)
                    next_sync += args.sync_interval
                elif now >= next_report:
                    if not tok:
                        tok = token(stack.base_url, client, "reports:write", http)
                    sid, seq = seeds[rng.randrange(len(seeds))]
                    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    rid = f"load-{n}-{i}"
                    item = {"id": rid, "signal": {"id": sid}, "collection": cid, "seq": seq, "distance": 0,
                            "outcome": "removed", "matched_at": at, "actioned_at": at, "automated_detection": True,
                            "automated_decision": False, "surface": "upload", "content_ref": f"content-{rid}"}
                    r = timed_post(http, timings, stack.base_url, "/v1/reports", "POST /v1/reports",
                                   json={"reports": [item]}, headers={"Authorization": f"Bearer {tok}"})
                    i += 1
                    if r is not None and r.status_code in (200, 201):
                        with acked_lock:
                            acked.append(("report", [client.partner_id, rid], []))
                    next_report += args.report_interval
                else:
                    stop.wait(max(0.0, min(next_sync, next_report) - now))

        threads = [threading.Thread(target=submitter, args=(n, writers[n % len(writers)]), daemon=True)
                   for n in range(args.submitters)]
        threads += [threading.Thread(target=partner, args=(n, c, k), daemon=True)
                    for n, (c, k) in enumerate(zip(readers, kits, strict=True))]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        stop.wait(args.seconds)
        stop.set()
        timings.measuring = False
        for t in threads:
            t.join(120)
        elapsed = time.monotonic() - t0

        # The state afterwards: everything sealed, every partner synced once more.
        wait_until_settled(stack.owner_url)
        problems = [p for p in (k.sync() for k in kits) if p]
        wait_until_settled(stack.owner_url)
        engine = make_engine(stack.owner_url)
        with engine.connect() as conn:
            signals = {str(i): str(v) for i, v in conn.execute(text("SELECT id, value FROM signals"))}
            reports = {(str(p), str(r)) for p, r in conn.execute(text("SELECT partner_id, report_id FROM reports"))}
            head = int(conn.scalar(text("SELECT size FROM collection_heads WHERE collection_id = :c"), {"c": cid}))
            active = {(str(i), str(v)) for i, v in conn.execute(
                text("SELECT id, value FROM signals WHERE collection_id = :c AND status = 'active'"), {"c": cid})}
            acks: dict[str, int] = {}
            for (e,) in conn.execute(text("SELECT entry FROM audit_entries ORDER BY seq")):
                entry = json.loads(bytes(e))
                if entry["action"] == "feed.ack" and entry["subject"] == f"collection/{cid}":
                    acks[entry["details"]["partner"]] = entry["details"]["size"]
        engine.dispose()
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)

    missing = 0
    for kind, ids, values in acked:
        if kind == "signals":
            missing += sum(1 for i, v in zip(ids, values, strict=True) if signals.get(i) != v)
        elif (ids[0], ids[1]) not in reports:
            missing += 1
    behind = [c.partner_id for c in readers if acks.get(c.partner_id) != head]
    unequal = sum(1 for k in kits if k.signals(cid) != active)

    total = sum(len(v) for v in timings.latency.values())
    print(f"\nmeasured {elapsed:.1f} s: {total:,} requests, {total / elapsed:,.1f} requests/s; "
          f"{sum(len(ids) for kind, ids, _ in acked if kind == 'signals'):,} signals and "
          f"{sum(1 for kind, _, _ in acked if kind == 'report'):,} reports acknowledged")
    print(f"{'route':<48} {'count':>7} {'per s':>7} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for name in sorted(timings.latency, key=lambda n: -len(timings.latency[n])):
        lat = timings.latency[name]
        statuses = ", ".join(f"{s} {n}" for s, n in sorted(timings.statuses[name].items()))
        print(f"{name:<48} {len(lat):>7} {len(lat) / elapsed:>7.1f} {pct(lat, 0.5):>8.1f} {pct(lat, 0.99):>8.1f}  "
              f"{statuses}")
    errors: Counter[str] = Counter()
    for name, counts in timings.statuses.items():
        # The kit asks for the key set version after the latest it holds: a 404 says there is none yet.
        expected = {"404"} if name == "GET /v1/keys/{}" else set()
        errors.update({s: n for s, n in counts.items() if not s.startswith("2") and s not in expected})
    print(f"errors by status (not counting the kit's 404s for a next key set): {dict(errors) or 'none'}")
    print(f"after: head {head}, partners acked at the head {len(readers) - len(behind)}/{len(readers)}, mirrors "
          f"equal to the collection ({len(active):,} active) {len(readers) - unequal}/{len(readers)}, acknowledged "
          f"writes missing {missing}, final syncs failed {len(problems)}{': ' + problems[0] if problems else ''}")
    ok = not missing and not behind and not unequal and not problems
    print("RESULT: " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
