"""Audit log figures on PostgreSQL: append rate, integration time, root and proof latency at 1M entries.

    .venv/bin/python benchmarks/bench_auditlog.py [--entries 100000] [--big 1000000]
        [--server embedded|external [--url URL]] [--modes early,synchronous] [--writers 1,2]

Runs on scratch databases of the embedded PostgreSQL (a private server it starts) or of an external server
(`--url`, default HASHFED_BENCH_POSTGRES_URL or postgresql://root@127.0.0.1:5432/postgres), dropped afterwards
(benchmarks/servers.py). The writers, the integration and the proofs connect as `hashfed_app`, as the hub does;
only the bulk load of the 1M-entry log (which bypasses `record`) runs as the database's owner.
Appending: `--entries` entries per run, one per commit through `record()` in a session of `make_session_factory`,
split over each count of `--writers` processes, in each mode of `--modes` (`early`: the hub's default;
`synchronous`: `early_release=False`). Target: >= 2,000 entries/s with two writers. `--big 0` skips the 1M part.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers
from servers import loadavg
from sqlalchemy import text

from audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from audit.payloads import AuditEntry as EntryPayload
from hub import rls
from hub.config import Settings
from hub.db import make_engine, make_session_factory
from hub.ops.jobs import integrate_audit_log
from hub.transparency import auditlog
from hub.transparency.models import AuditEntry, AuditHead
from tests.hub.auditkit import make_hub_keys

ROOT = Path(__file__).resolve().parents[1]

WRITER = """
import sys, time
from hub.transparency.auditlog import Actor, record
from hub.db import make_engine, make_session_factory
factory = make_session_factory(make_engine(sys.argv[1]), early_release=sys.argv[4] == "early")
n, start = int(sys.argv[2]), float(sys.argv[3])
with factory() as s:
    s.connection()  # connect before the start: the pool holds one warm connection
late = time.time() - start
time.sleep(max(0.0, -late))
for i in range(n):
    with factory.begin() as s:
        actor = Actor(type="partner", partner="p1", client="c1")
        record(s, actor, "signal.add", f"signal/{i}", {"collection": "c1"})
print(late, time.time())
"""


def _writers(url: str, total: int, processes: int, mode: str) -> float:
    """Seconds from a common start to the last writer's last commit. The writers import, connect and then
    wait for the start, so interpreter start-up is not counted as appending."""
    start = time.time() + 3.0 + 2.0 * processes
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(total // processes), repr(start), mode],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    ends = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode:
            raise SystemExit("a writer failed")
        late, end = map(float, out.split())
        if late > 0:
            raise SystemExit(f"a writer was ready {late:.1f} s after the common start: give it more time")
        ends.append(end)
    return max(ends) - start


def _bulk(engine, n: int) -> None:
    """Insert n canonical entries with executemany (not through `record`): the 1M-entry scratch log."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    actor = {"type": "partner", "partner": "p1"}
    step = 20_000
    with engine.begin() as conn:
        for start in range(0, n, step):
            rows = []
            for seq in range(start, min(n, start + step)):
                moment = t0 + timedelta(seconds=seq // 100)
                entry = EntryPayload(seq, moment, actor, "signal.add", f"signal/{seq}", {}).to_bytes()
                rows.append(
                    {"seq": seq, "entry": entry, "leaf_hash": leaf_hash(entry), "recorded_at": moment}
                )
            conn.execute(AuditEntry.__table__.insert(), rows)
        # Bulk rows bypass record(): move the writers' head past them.
        last = t0 + timedelta(seconds=(n - 1) // 100)
        conn.execute(
            AuditHead.__table__.update().values(next_seq=n, last_time=last)
        )


def _latency(fn, runs: int = 200) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


MODES = {
    "early": "early lock release, flushed before commit returns (the hub's default)",
    "synchronous": "lock held through the commit's flush (early_release=False)",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--modes", default="early,synchronous", help="comma-separated: early, synchronous")
    parser.add_argument("--writers", default="1,2", help="comma-separated writer process counts")
    servers.add_arguments(parser)
    args = parser.parse_args()
    modes = args.modes.split(",")
    if not set(modes) <= set(MODES):
        parser.error(f"--modes: one or more of {', '.join(MODES)}")
    counts = [int(w) for w in args.writers.split(",")]
    with servers.server(args) as server, tempfile.TemporaryDirectory() as tmp:
        print(server.describe())
        with server.database() as db:
            engine = make_engine(db.app_url)
            factory = make_session_factory(engine)
            settings = Settings(var_dir=Path(tmp) / "var", database_url=db.app_url, hub_name="bench.test")
            with factory.begin() as s:
                rls.set_tenant(s, rls.SYSTEM)
                hub_keys, _root = make_hub_keys(s, settings)
            n = args.entries
            print(f"append through record(), one entry per commit, {n:,} entries per run, as hashfed_app")
            print(f"  loadavg: {loadavg()}")
            for mode in modes:
                print(f"  {MODES[mode]}:")
                for w in counts:
                    took = _writers(db.app_url, n, w, mode)
                    each = f", {n // w:,} each" if w > 1 else ""
                    print(f"    {w} writer{'s' if w > 1 else ' '}: {n / took:8.0f} entries/s  ({took:.1f} s{each})")
            print(f"  loadavg: {loadavg()}")
            t = time.perf_counter()
            r = integrate_audit_log(factory, datetime.now(UTC), keys=hub_keys)
            took = time.perf_counter() - t
            print(f"integration of {r.size - r.old_size:,} new entries + checkpoint: {took:.2f} s")
            engine.dispose()
        if args.big:
            with server.database() as db:
                _proofs(db.owner_url, db.app_url, args.big, Path(tmp) / "var2")
        print(f"loadavg at end: {loadavg()}")


def _proofs(owner_url: str, app_url: str, big: int, var_dir: Path) -> None:
    """Integration from empty, roots and proofs on a log of `big` entries."""
    engine = make_engine(app_url)
    factory = make_session_factory(engine)
    settings = Settings(var_dir=var_dir, database_url=app_url, hub_name="bench.test")
    with factory.begin() as s:
        rls.set_tenant(s, rls.SYSTEM)
        hub_keys, _root = make_hub_keys(s, settings)
    owner = make_engine(owner_url)
    t = time.perf_counter()
    _bulk(owner, big)
    print(f"bulk insert of {big:,} entries (executemany, as the owner): {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    r = integrate_audit_log(factory, datetime.now(UTC), keys=hub_keys)
    print(f"integration of {r.size:,} entries from empty + checkpoint: {time.perf_counter() - t:.1f} s")
    with owner.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    owner.dispose()
    with factory() as s:
        size = big
        root = auditlog.root(s, size)
        rng = secrets.SystemRandom()
        med, p99 = _latency(lambda: auditlog.root(s, rng.randrange(1, size + 1)))
        print(f"root at a random size <= {size:,}: median {med:.2f} ms, p99 {p99:.2f} ms")

        def inclusion() -> None:
            seq = rng.randrange(size)
            p = auditlog.inclusion_proof(s, seq, size)
            verify_inclusion(seq, size, p.leaf_hash, p.proof, root)

        med, p99 = _latency(inclusion)
        print(f"inclusion proof at {size:,} (incl. verify): median {med:.2f} ms, p99 {p99:.2f} ms")

        def consistency() -> None:
            a = rng.randrange(1, size + 1)
            c = auditlog.consistency_proof(s, a, size)
            verify_consistency(a, size, c.root1, c.root2, c.proof)

        med, p99 = _latency(consistency)
        print(f"consistency proof to {size:,} (incl. verify): median {med:.2f} ms, p99 {p99:.2f} ms")
    engine.dispose()


if __name__ == "__main__":
    main()
