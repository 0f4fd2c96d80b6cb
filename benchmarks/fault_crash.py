"""Crash the hub, the scheduler and the database under load; afterwards nothing acknowledged may be missing.

On a private PostgreSQL cluster (fsync on, synchronous commits, a lazy WAL writer so only the hub's own flush
makes a commit durable), `hashfed serve` (gunicorn, as the application role) and `hashfed scheduler` (sealing
and audit checkpoints every second) run while submitter threads post signals with Idempotency-Keys and
reporter threads post reports; each request is retried with the same key until it gets a 2xx, and every 2xx
receipt is recorded. A loop kills one process per round with SIGKILL, in turn the hub (gunicorn master and
workers), the scheduler (mid-seal or mid-checkpoint, as the timing falls) and the database
(`pg_ctl stop -m immediate`), then restarts it. A partner kit syncs half-way through.

Afterwards, with everything restarted, sealed and checkpointed:
  - every acknowledged signal is in `signals` with its value, every acknowledged report in `reports`, and the
    audit entry at each receipt's `audit_seq` is that submission's (action, subject, ids or report digests);
  - audit seqs are 0..n-1 (unique, gapless); each collection's batch seqs are 1..n;
  - `hashfed audit export` verifies with `hashfed-audit verify`, pinned, extending every audit checkpoint the
    load saw published during the run;
  - two kits syncing from zero and the one synced half-way hold exactly the collection's active signals.
It prints one line per round and a summary, and exits 1 if any acknowledged write is lost or a check fails.

    .venv/bin/python benchmarks/fault_crash.py [--rounds 9] [--submitters 4] [--reporters 2]

Uses the embedded PostgreSQL wheel's programs (tests/pgcluster.py); nothing needs to be installed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests
from fault_stack import BIN, Client, Stack, token
from sqlalchemy import text

from hub.db import make_engine
from partners.client.auth import make_session
from partners.client.config import PartnerConfig
from partners.client.mirror import Mirror
from partners.client.sync import Syncer
from partners.client.transport import RequestsTransport, Transport

SIGNALS_PER_REQUEST = 5
RETRY_PAUSE_S = 0.2


@dataclass
class Ack:
    """One acknowledged write: what the receipt said."""

    kind: str  # "signals" or "report"
    audit_seq: int
    partner_id: str
    ids: list[str] = field(default_factory=list)  # signal ids (signals) or [report id] (report)
    values: list[str] = field(default_factory=list)  # md5 values (signals)
    sha256: str = ""  # the report's digest


class Load:
    """Writers that retry each request with the same Idempotency-Key (or report id) until it is acknowledged."""

    def __init__(self, base_url: str, cid: str) -> None:
        self.base_url = base_url
        self.cid = cid
        self.acks: list[Ack] = []
        self.statuses: Counter[str] = Counter()
        self.replays = 0
        self.refused: list[str] = []  # 4xx other than 401: a request the hub should have accepted
        self.lock = threading.Lock()
        self.stop = threading.Event()  # no new requests
        self.give_up = threading.Event()  # stop retrying unacknowledged ones
        self.checkpoints: dict[int, str] = {}  # audit checkpoints seen published, by size
        self.threads: list[threading.Thread] = []

    def _count(self, what: str) -> None:
        with self.lock:
            self.statuses[what] += 1

    def _post_until_acked(self, http: requests.Session, client: Client, scope: str, path: str,
                          body: dict[str, Any], headers: dict[str, str], tok: list[str]) -> dict[str, Any] | None:
        while not self.give_up.is_set():
            try:
                if not tok:
                    tok.append(token(self.base_url, client, scope, http))
                r = http.post(f"{self.base_url}{path}", json=body, timeout=30,
                              headers={**headers, "Authorization": f"Bearer {tok[0]}"})
            except requests.RequestException as e:
                self._count(type(e).__name__)
                time.sleep(RETRY_PAUSE_S)
                continue
            self._count(str(r.status_code))
            if r.status_code in (200, 201):
                if r.headers.get("Idempotency-Replayed") == "true":
                    with self.lock:
                        self.replays += 1
                return dict(r.json())
            if r.status_code == 401:
                tok.clear()
            elif r.status_code < 500 and r.status_code != 429:
                with self.lock:
                    self.refused.append(f"{path} {r.status_code}: {r.text[:200]}")
                return None
            time.sleep(RETRY_PAUSE_S)
        return None

    def submitter(self, n: int, client: Client) -> None:
        http, tok, i = requests.Session(), [], 0
        while not self.stop.is_set():
            values = [os.urandom(16).hex() for _ in range(SIGNALS_PER_REQUEST)]
            body = {"signals": [{"type": "md5", "value": v} for v in values]}
            got = self._post_until_acked(http, client, "hashes:write", f"/v1/collections/{self.cid}/signals", body,
                                         {"Idempotency-Key": f"fault-{n}-{i}"}, tok)
            i += 1
            if got is not None:
                with self.lock:
                    self.acks.append(Ack("signals", got["audit_seq"], client.partner_id, list(got["ids"]), values))

    def reporter(self, n: int, client: Client, seeds: list[tuple[str, int]]) -> None:
        http, tok, i = requests.Session(), [], 0
        while not self.stop.is_set():
            sid, seq = seeds[i % len(seeds)]
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            rid = f"fault-{n}-{i}"
            item = {"id": rid, "signal": {"id": sid}, "collection": self.cid, "seq": seq, "distance": 0,
                    "outcome": "removed", "matched_at": now, "actioned_at": now, "automated_detection": True,
                    "automated_decision": False, "surface": "upload", "content_ref": f"content-{n}-{i}"}
            got = self._post_until_acked(http, client, "reports:write", "/v1/reports", {"reports": [item]}, {}, tok)
            i += 1
            if got is not None:
                r = got["reports"][0]
                with self.lock:
                    self.acks.append(Ack("report", r["audit_seq"], client.partner_id, [rid], sha256=r["sha256"]))
            time.sleep(0.05)

    def watcher(self) -> None:
        """Keep every audit checkpoint seen published, as partners and auditors would."""
        while not self.give_up.is_set():
            try:
                r = requests.get(f"{self.base_url}/v1/audit/checkpoint", timeout=5)
                if r.status_code == 200:
                    size = int(r.text.split("\n")[1])
                    with self.lock:
                        self.checkpoints.setdefault(size, r.text)
            except (requests.RequestException, ValueError, IndexError):
                pass
            time.sleep(0.5)

    def start(self, writers: list[Client], reporters: list[Client], seeds: list[tuple[str, int]],
              submitters: int) -> None:
        jobs: list[threading.Thread] = [threading.Thread(target=self.watcher, daemon=True)]
        jobs += [threading.Thread(target=self.submitter, args=(n, writers[n % len(writers)]), daemon=True)
                 for n in range(submitters)]
        jobs += [threading.Thread(target=self.reporter, args=(n, c, seeds), daemon=True)
                 for n, c in enumerate(reporters)]
        for t in jobs:
            t.start()
        self.threads = jobs

    def finish(self, grace_s: float) -> None:
        self.stop.set()
        deadline = time.monotonic() + grace_s
        for t in self.threads[1:]:
            t.join(max(0.0, deadline - time.monotonic()))
        self.give_up.set()
        self.threads[0].join(5)

    def count(self, kind: str) -> int:
        with self.lock:
            return sum(1 for a in self.acks if a.kind == kind)


def wait_until_settled(owner_url: str, timeout_s: float = 120.0) -> None:
    """Until nothing is pending and the latest audit checkpoint covers every entry (the scheduler's work)."""
    engine = make_engine(owner_url)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                pending = conn.scalar(text("SELECT count(*) FROM pending_changes"))
                entries = conn.scalar(text("SELECT count(*) FROM audit_entries"))
                size = conn.scalar(text("SELECT coalesce(max(size), 0) FROM audit_checkpoints"))
            if pending == 0 and size == entries:
                return
            time.sleep(0.5)
    finally:
        engine.dispose()
    raise RuntimeError(f"not settled in {timeout_s} s: {pending} pending changes, checkpoint {size} of {entries}")


def seed(stack: Stack, cid: str, writer: Client, n: int) -> list[tuple[str, int]]:
    """n signals submitted and sealed before the faults start: what the reporters report on."""
    tok = token(stack.base_url, writer, "hashes:write")
    body = {"signals": [{"type": "md5", "value": os.urandom(16).hex()} for _ in range(n)]}
    r = requests.post(f"{stack.base_url}/v1/collections/{cid}/signals", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {tok}"})
    r.raise_for_status()
    wait_until_settled(stack.owner_url)
    engine = make_engine(stack.owner_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT signal_id, added_seq FROM signal_seqs ORDER BY signal_id")).all()
    engine.dispose()
    return [(str(s), int(q)) for s, q in rows]


class Kit:
    """A partner kit: the kit's sync library in this process, with its own SQLite mirror."""

    def __init__(self, stack: Stack, client: Client, pin: str, home: Path,
                 wrap: Callable[[Transport], Transport] | None = None) -> None:
        home.mkdir(parents=True)
        secret = home / "secret"
        secret.write_text(client.secret)
        os.chmod(secret, 0o600)
        config = PartnerConfig(hub_url=stack.base_url, client_id=client.client_id, keyset_sha256=pin,
                               secret_path=str(secret))
        self.mirror = Mirror.open(f"sqlite:///{home}/mirror.db")
        transport: Transport = RequestsTransport(stack.base_url, make_session(config))
        self.syncer = Syncer(wrap(transport) if wrap else transport, self.mirror, pin)

    def sync(self, attempts: int = 5) -> str:
        """Sync; a sync broken by a crash is retried (the kit resumes where its mirror is)."""
        problem = ""
        for _ in range(attempts):
            try:
                report = self.syncer.sync()
                if report.ok:
                    return ""
                problem = "; ".join(str(e) for e in report.errors())
            except Exception as e:  # a connection dropped by a killed hub surfaces as the kit's own error
                problem = f"{type(e).__name__}: {e}"
            time.sleep(1)
        return problem

    def signals(self, cid: str) -> set[tuple[str, str]]:
        return {(s.signal_id, s.value) for s in self.mirror.active_signals(cid)}


def check(stack: Stack, load: Load, cid: str, work: Path, kits: list[Kit]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    engine = make_engine(stack.owner_url)
    lost: list[str] = []
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT seq, entry FROM audit_entries"))
        entries = {int(seq): json.loads(bytes(e)) for seq, e in rows}
        rows = conn.execute(text("SELECT id, collection_id, value FROM signals"))
        signals = {str(i): (str(c), str(v)) for i, c, v in rows}
        reports = {(str(p), str(r)) for p, r in conn.execute(text("SELECT partner_id, report_id FROM reports"))}
        seqs = [int(s) for s in conn.scalars(text("SELECT seq FROM audit_entries ORDER BY seq"))]
        batch_seqs: dict[str, list[int]] = {}
        for c, s in conn.execute(text("SELECT collection_id, seq FROM batches ORDER BY collection_id, seq")):
            batch_seqs.setdefault(str(c), []).append(int(s))
        active = {(str(i), str(v)) for i, v in conn.execute(
            text("SELECT id, value FROM signals WHERE collection_id = :c AND status = 'active'"), {"c": cid})}
    engine.dispose()

    for a in load.acks:
        entry = entries.get(a.audit_seq)
        problems = []
        if a.kind == "signals":
            missing = [i for i, v in zip(a.ids, a.values, strict=True) if signals.get(i) != (cid, v)]
            if missing:
                problems.append(f"{len(missing)} of its {len(a.ids)} signals missing ({missing[0]}, ...)")
            if entry is None or entry["action"] != "signals.submit" or entry["subject"] != f"collection/{cid}" \
                    or entry["details"].get("ids") != a.ids:
                problems.append(f"audit entry {a.audit_seq} is {entry and entry['action']!r}, not this submission")
        else:
            if (a.partner_id, a.ids[0]) not in reports:
                problems.append("report missing")
            listed = [] if entry is None else entry["details"].get("reports", [])
            if entry is None or entry["action"] != "reports.submit" or \
                    {"id": a.ids[0], "sha256": a.sha256} not in listed:
                problems.append(f"audit entry {a.audit_seq} is {entry and entry['action']!r}, not this report")
        if problems:
            lost.append(f"{a.kind} acknowledged at audit_seq {a.audit_seq}: {'; '.join(problems)}")
    out["lost"] = lost
    out["audit entries"] = len(seqs)
    out["audit seqs gapless"] = seqs == list(range(len(seqs)))
    out["batch seqs gapless"] = all(s == list(range(1, len(s) + 1)) for s in batch_seqs.values())
    out["batches"] = sum(len(s) for s in batch_seqs.values())

    export = work / "export"
    stack.hashfed("audit", "export", "--to", str(export))
    kept = []
    for size, note in sorted(load.checkpoints.items()):
        p = work / "kept" / f"{size}.note"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(note.encode())
        kept += ["--checkpoint", str(p)]
    done = subprocess.run([str(BIN / "hashfed-audit"), "verify", str(export), "--keyset-sha256", stack.pin(), *kept],
                          capture_output=True, text=True)
    out["verify"] = done.stdout.strip().splitlines()[0] if done.stdout.strip() else done.stderr.strip()
    out["verify ok"] = done.returncode == 0
    out["kept checkpoints"] = len(load.checkpoints)

    problems = [k.sync() for k in kits]
    held = [k.signals(cid) for k in kits]
    out["kits"] = [f"{len(h)} signals{' (' + p + ')' if p else ''}" for h, p in zip(held, problems, strict=True)]
    out["active signals"] = len(active)
    out["kits converge"] = all(h == active for h in held) and not any(problems)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9, help="kills, taking hub, scheduler, database in turn")
    ap.add_argument("--submitters", type=int, default=4)
    ap.add_argument("--reporters", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    ap.add_argument("--min-gap", type=float, default=2.0, help="seconds of load before each kill, at least")
    ap.add_argument("--max-gap", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=None, help="random seed of the kill timing")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs) afterwards")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="hashfed-fault-work-"))
    stack = Stack(work, workers=args.workers)
    t0 = time.monotonic()
    try:
        stack.create()
        cid, writers, readers = stack.provision(contributors=2, readers=args.reporters + 3)
        stack.start_hub()
        stack.scheduler.start()
        seeds = seed(stack, cid, writers[0], 20)
        pin = stack.pin()
        reporters, kit_clients = readers[: args.reporters], readers[args.reporters:]
        load = Load(stack.base_url, cid)
        load.start(writers, reporters, seeds, args.submitters)
        print(f"fault_crash: {args.rounds} rounds, {args.submitters} submitters ({SIGNALS_PER_REQUEST} signals per "
              f"request), {args.reporters} reporters, gunicorn {args.workers} workers, {stack.cluster.version()}")
        print(f"{'round':>5} {'t (s)':>6} {'killed':<10} {'down (s)':>8} {'acked submissions':>18} "
              f"{'acked reports':>14}")
        kills: Counter[str] = Counter()
        midway: Kit | None = None
        for r in range(1, args.rounds + 1):
            time.sleep(rng.uniform(args.min_gap, args.max_gap))
            target = ("hub", "scheduler", "database")[(r - 1) % 3]
            down = time.monotonic()
            if target == "hub":
                stack.hub.kill9()
                stack.start_hub()
            elif target == "scheduler":
                stack.scheduler.kill9()
                stack.scheduler.start()
            else:
                stack.cluster.crash()
                stack.cluster.start()
            kills[target] += 1
            print(f"{r:>5} {time.monotonic() - t0:>6.1f} {target:<10} {time.monotonic() - down:>8.2f} "
                  f"{load.count('signals'):>18} {load.count('report'):>14}", flush=True)
            if r == (args.rounds + 1) // 2:
                midway = Kit(stack, kit_clients[0], pin, work / "kit-midway")
                problem = midway.sync()
                note = f" ({problem})" if problem else ""
                print(f"      kit synced half-way: {len(midway.signals(cid))} signals{note}")
        load.finish(grace_s=60)
        wait_until_settled(stack.owner_url)
        kits = [Kit(stack, kit_clients[1], pin, work / "kit-a"), Kit(stack, kit_clients[2], pin, work / "kit-b")]
        if midway is not None:
            kits.append(midway)
        result = check(stack, load, cid, work, kits)
    finally:
        stack.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work folder kept: {work}")

    acked_signals = sum(len(a.ids) for a in load.acks if a.kind == "signals")
    print()
    print(f"elapsed:                {time.monotonic() - t0:.0f} s")
    print(f"kills:                  {sum(kills.values())} ({', '.join(f'{k} {v}' for k, v in sorted(kills.items()))})")
    print(f"acknowledged writes:    {load.count('signals')} submissions ({acked_signals} signals), "
          f"{load.count('report')} reports; {load.replays} answered as idempotent replays")
    print(f"statuses and errors:    {', '.join(f'{k} {v}' for k, v in sorted(load.statuses.items()))}")
    print(f"refused (4xx):          {len(load.refused)}{': ' + load.refused[0] if load.refused else ''}")
    print(f"lost writes:            {len(result['lost'])} of {len(load.acks)} acknowledged")
    for line in result["lost"][:20]:
        print(f"  lost: {line}")
    print(f"audit entries:          {result['audit entries']}, seqs unique and gapless: {result['audit seqs gapless']}")
    print(f"batches:                {result['batches']}, seqs gapless per collection: {result['batch seqs gapless']}")
    print(f"hashfed-audit verify:   {result['verify']} (against {result['kept checkpoints']} kept checkpoints)")
    print(f"kits:                   {'; '.join(result['kits'])}; collection holds {result['active signals']} "
          f"active; converge: {result['kits converge']}")
    ok = (not result["lost"] and result["audit seqs gapless"] and result["batch seqs gapless"]
          and result["verify ok"] and result["kits converge"] and not load.refused)
    print("RESULT:                 " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
