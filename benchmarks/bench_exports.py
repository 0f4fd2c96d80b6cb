"""Transparency export benchmark: a quarter with 1,000,000 report outcomes and 100,000 signals.

    .venv/bin/python benchmarks/bench_exports.py [--outcomes 1000000] [--signals 100000] [--patches 50000]
        [--server embedded|external [--url URL]]

Builds the quarter 2026-Q3 on a scratch database (benchmarks/servers.py) with COPY: signals in submissions of
1,000 (one `signals.submit` entry each), reports in requests of 1,000 (one `reports.submit` entry each, the
first version of each report), and `--patches` later outcome changes (one `report.outcome` entry each);
then signs an audit checkpoint. Report digests are opaque to an export, so they are the SHA-256 of the
report id here rather than of the report's canonical JSON. Then, each in a child process of its own so that
its peak memory is its own: `service.create` (draw the bundle, sign, record; what `POST /v1/exports` does),
`service.write` to a file (what `GET /v1/exports/{id}` does), and `hashfed-audit verify-export`.
Targets: generation < 60 s and verification < 60 s, memory bounded (peak RSS printed). The data set has no
disputes: a period holds few, and their rows are gathered in memory (docs/formats.md).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PERIOD = "2026-Q3"
SETUP = datetime(2026, 6, 20, tzinfo=UTC)
START = datetime(2026, 7, 1, tzinfo=UTC)
AFTER = datetime(2026, 10, 2, tzinfo=UTC)
EXPORTED = datetime(2026, 10, 3, tzinfo=UTC)
PER_REQUEST = 1000


def _ts(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def _pg(d: datetime) -> str:
    return d.strftime("%Y-%m-%d %H:%M:%S+00")


def _entry(seq: int, t: datetime, actor: dict[str, str], action: str, subject: str, details: dict) -> bytes:
    # Keys sorted, compact, ASCII only: for these values exactly RFC 8785's bytes (audit.canonical).
    body = {"action": action, "actor": actor, "details": details, "seq": seq, "subject": subject, "time": _ts(t)}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class Copier:
    """COPY rows into a table in chunks (CSV through an in-memory buffer)."""

    def __init__(self, cursor: object, table: str, columns: str) -> None:
        self.cursor, self.sql = cursor, f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)"
        self.buffer, self.rows = io.StringIO(), 0

    def add(self, *values: object) -> None:
        self.buffer.write(",".join("" if v is None else str(v) for v in values) + "\n")
        self.rows += 1
        if self.rows % 100_000 == 0:
            self.flush()

    def flush(self) -> None:
        self.buffer.seek(0)
        self.cursor.copy_expert(self.sql, self.buffer)  # type: ignore[attr-defined]
        self.buffer = io.StringIO()


def build(app_url: str, copy_url: str, settings: object, args: argparse.Namespace) -> None:
    """`copy_url`: a superuser on the scratch database (PostgreSQL refuses COPY FROM under row-level security)."""
    import time_machine
    from sqlalchemy import select, text

    from hub import rls
    from hub.db import make_engine, make_session_factory
    from hub.transparency import auditlog
    from hub.transparency.keys import HubKeys
    from hub.transparency.models import AuditHead
    from tests.hub import factories
    from tests.hub import feedkit as kit

    engine = make_engine(app_url)
    factory = make_session_factory(engine)
    with time_machine.travel(SETUP, tick=False), factory.begin() as s:
        rls.set_tenant(s, rls.SYSTEM)
        kit.hub_keys(s, settings)  # type: ignore[arg-type]
        owner = kit.partner(s, "contributor")
        reporters = [factories.partner(s, name=f"reporter-{i}") for i in range(20)]
        keys = HubKeys.load(settings, s)  # type: ignore[arg-type]
        c = kit.collection(s, keys, owner)
        cid, oid, rids = c.id, owner.id, [p.id for p in reporters]

    t0 = time.perf_counter()
    copier = make_engine(copy_url)
    with make_session_factory(copier).begin() as s:
        seq = int(s.scalar(select(AuditHead.next_seq)) or 0)
        cur = s.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        entries = Copier(cur, "audit_entries", "seq, entry, leaf_hash, recorded_at")
        sigs = Copier(cur, "signals", "id, collection_id, type, value, contributor_id, status, added_audit_seq, "
                      "created_at, plain_claim")
        reps = Copier(cur, "reports", "partner_id, report_id, signal_id, collection_id, seq, distance, surface, "
                      "content_ref_digest, matched_at, automated_detection, request_sha256, received_at, outcome, "
                      "version, actioned_at, automated_decision, updated_at")
        outs = Copier(cur, "report_outcomes", "partner_id, report_id, version, outcome, actioned_at, "
                      "automated_decision, recorded_at, report_sha256, audit_seq")
        span = (AFTER - timedelta(days=2) - START).total_seconds()
        n_submits = args.signals // PER_REQUEST
        n_reports = args.outcomes - args.patches
        n_requests = -(-n_reports // PER_REQUEST)
        total = n_submits + n_requests + args.patches
        step = span / total

        def add_entry(t: datetime, actor: dict, action: str, subject: str, details: dict) -> int:
            nonlocal seq
            data = _entry(seq, t, actor, action, subject, details)
            entries.add(seq, "\\x" + data.hex(), "\\x" + hashlib.sha256(b"\x00" + data).hexdigest(), _pg(t))
            seq += 1
            return seq - 1

        k = 0
        signal_ids: list[str] = []
        for _ in range(n_submits):
            t = START + timedelta(seconds=int(k * step))
            k += 1
            ids = [str(uuid.uuid4()) for _ in range(PER_REQUEST)]
            at = add_entry(t, {"type": "partner", "partner": oid, "client": "bench"}, "signals.submit",
                           f"collection/{cid}", {"collection": cid, "count": PER_REQUEST, "duplicates": 0,
                                                 "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest()})
            for j, sid in enumerate(ids):
                kind = "pdq" if j % 10 else "md5"
                value = hashlib.sha256(sid.encode()).hexdigest()[: 64 if kind == "pdq" else 32]
                sigs.add(sid, cid, kind, value, oid, "active", at, _pg(t), "true")
            signal_ids += ids[:: 10]
        sigs.flush()
        outcomes = ("blocked", "removed", "removed", "no_action", "pending_review")
        for r in range(n_requests):
            t = START + timedelta(seconds=int(k * step))
            k += 1
            partner = rids[r % len(rids)]
            n = min(PER_REQUEST, n_reports - r * PER_REQUEST)
            ids = [f"r-{r:05d}-{j:04d}" for j in range(n)]
            shas = [hashlib.sha256(x.encode()).hexdigest() for x in ids]
            at = add_entry(t, {"type": "partner", "partner": partner, "client": "bench"}, "reports.submit",
                           f"partner/{partner}", {"count": n, "reports": [{"id": x, "sha256": h} for x, h in
                                                                          zip(ids, shas, strict=True)]})
            matched = t - timedelta(minutes=10)
            for j, (rid, sha) in enumerate(zip(ids, shas, strict=True)):
                outcome = outcomes[j % len(outcomes)]
                actioned = _pg(matched + timedelta(seconds=30 + j % 600)) if outcome in ("blocked", "removed") else None
                sid = signal_ids[(r * PER_REQUEST + j) % len(signal_ids)]
                reps.add(partner, rid, sid, cid, 1, j % 32, "upload", hashlib.sha256(rid.encode()).hexdigest(),
                         _pg(matched), j % 3 != 0, sha, _pg(t), outcome, 1, actioned, j % 7 == 0, _pg(t))
                outs.add(partner, rid, 1, outcome, actioned, j % 7 == 0, _pg(t), sha, at)
        reps.flush()
        for p in range(args.patches):
            t = START + timedelta(seconds=int(k * step))
            k += 1
            r, j = divmod(p * 7 % n_reports, PER_REQUEST)
            rid, partner = f"r-{r:05d}-{j:04d}", rids[r % len(rids)]
            sha = hashlib.sha256(f"{rid}/2".encode()).hexdigest()
            at = add_entry(t, {"type": "partner", "partner": partner, "client": "bench"}, "report.outcome",
                           f"report/{partner}/{rid}",
                           {"report": rid, "version": 2, "outcome": "removed", "sha256": sha})
            outs.add(partner, rid, 2, "removed", _pg(t), False, _pg(t), sha, at)
        add_entry(AFTER, {"type": "operator", "name": "cli"}, "bench.after", "bench/after", {})
        entries.flush()
        outs.flush()
        s.execute(text("UPDATE audit_head SET next_seq = :n, last_time = :t WHERE id = 1"), {"n": seq, "t": AFTER})
    print(f"built: {entries.rows:,} audit entries, {sigs.rows:,} signals, {reps.rows:,} reports, "
          f"{outs.rows:,} report outcomes in {time.perf_counter() - t0:.1f} s")
    with copier.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))  # what autovacuum does after a load this size
    copier.dispose()
    with factory.begin() as s:
        keys = HubKeys.load(settings, s)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        auditlog.lock_integrator(s)
        done = auditlog.integrate(s, keys.audit_origin, keys.signer("audit"), AFTER)
        print(f"audit checkpoint of size {done.size:,} in {time.perf_counter() - t0:.1f} s")
    engine.dispose()


def child(args: argparse.Namespace) -> None:
    """One measured phase in this process; prints one JSON line."""
    t0 = time.perf_counter()
    out: dict[str, object] = {}
    if args.child == "verify":
        from audit.exports import verify_bundle

        report = verify_bundle(args.bundle, args.pin)
        out = {"ok": report.ok, "verdict": report.verdict[:300]}
    else:
        import time_machine

        from hub.config import Settings
        from hub.db import make_engine, make_session_factory
        from hub.exports import service
        from hub.transparency.auditlog import Actor
        from hub.transparency.keys import HubKeys

        settings = Settings(var_dir=Path(args.var), database_url=args.app_url, hub_name="bench.test")
        engine = make_engine(args.app_url)
        with time_machine.travel(EXPORTED, tick=False), make_session_factory(engine).begin() as s:
            keys = HubKeys.load(settings, s)
            if args.child == "generate":
                from audit.exports import parse_period

                row = service.create(s, keys, parse_period(PERIOD), actor=Actor.operator(), partner_id=None,
                                     threshold=10)
                out = {"id": row.id, "sha256": row.bundle_sha256, "bytes": row.bundle_bytes}
            else:
                row = service.get(s, args.export)
                with open(args.bundle, "w+b") as f:
                    service.write(s, keys, row, f)
                out = {"bytes": Path(args.bundle).stat().st_size}
        engine.dispose()
    out["seconds"] = round(time.perf_counter() - t0, 2)
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report its parent's peak.
    status = Path("/proc/self/status").read_text()
    out["peak_rss_mib"] = int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1]) // 1024
    print(json.dumps(out))


def _run(*argv: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{argv[1]} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--outcomes", type=int, default=1_000_000)
    ap.add_argument("--signals", type=int, default=100_000)
    ap.add_argument("--patches", type=int, default=50_000)
    ap.add_argument("--child", choices=["generate", "write", "verify"])
    ap.add_argument("--app-url")
    ap.add_argument("--var")
    ap.add_argument("--export")
    ap.add_argument("--bundle")
    ap.add_argument("--pin")
    import servers
    from servers import loadavg

    servers.add_arguments(ap)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    from hub.config import Settings

    tmp = Path(tempfile.mkdtemp())
    with servers.server(args) as server, server.database() as scratch:
        print(server.describe())
        print(f"loadavg at start: {loadavg()}")
        settings = Settings(var_dir=tmp / "var", database_url=scratch.app_url, hub_name="bench.test")
        from sqlalchemy.engine import make_url

        if args.server != "external":
            raise SystemExit("the data set is loaded with COPY as the external server's superuser: --server external")
        copy_url = make_url(args.url).set(database=make_url(scratch.app_url).database).render_as_string(
            hide_password=False
        )
        build(scratch.app_url, copy_url, settings, args)
        common = ["--app-url", scratch.app_url, "--var", str(tmp / "var")]
        made = _run("--child", "generate", *common)
        print(f"generate (POST /v1/exports): {made['seconds']} s, peak RSS {made['peak_rss_mib']} MiB, "
              f"bundle {int(made['bytes']):,} bytes")  # type: ignore[call-overload]
        bundle = str(tmp / "bundle.zip")
        wrote = _run("--child", "write", *common, "--export", str(made["id"]), "--bundle", bundle)
        print(f"write    (GET /v1/exports/id): {wrote['seconds']} s, peak RSS {wrote['peak_rss_mib']} MiB")
        from sqlalchemy import text

        from hub.db import make_engine

        engine = make_engine(scratch.app_url)
        with engine.connect() as conn:
            pin = conn.execute(text("SELECT payload_sha256 FROM key_sets WHERE version = 1")).scalar_one()
        engine.dispose()
        checked = _run("--child", "verify", "--bundle", bundle, "--pin", pin)
        print(f"verify-export: {checked['seconds']} s, peak RSS {checked['peak_rss_mib']} MiB: {checked['verdict']}")
        print(f"loadavg at end: {loadavg()}")
        if not checked["ok"]:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
