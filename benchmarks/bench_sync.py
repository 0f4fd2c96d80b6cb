"""Partner kit sync on loopback: a first sync of N PDQ hashes (default 1,000,000), then an incremental one.

Everything the kit does is timed: HTTP over 127.0.0.1 with byte caps, key set walk, descriptor, checkpoint
and freshness, snapshot (frontier, consistency, every chunk digest) or every batch envelope's signature,
chaining and the consistency proofs, and the SQLite mirror writes.
Targets: first sync < 60 s, incremental < 1 s.

    .venv/bin/python benchmarks/bench_sync.py [--count 1000000] [--incremental 1000] [--source hub|audit]
        [--server embedded|external [--url URL]]

--source hub    the real hub (hub.feed) served by waitress in a thread, on a scratch database of the embedded or
                an external PostgreSQL (benchmarks/servers.py) as `hashfed_app`, set up through the hub's
                services; the kit authenticates with OAuth (client_secret_basic).
--source audit  a log sealed with `audit` primitives (tests/partners/fakehub.py), served by http.server: for
                when the hub's feed is not available; the kit's work is the same.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import requests  # noqa: E402

from partners.client.mirror import Mirror  # noqa: E402
from partners.client.sync import Syncer  # noqa: E402
from partners.client.transport import RequestsTransport, Response, Transport  # noqa: E402


class TimedTransport(Transport):
    """Counts the seconds spent waiting for the hub (server work + transfer), to split the figures."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.waiting = 0.0

    def request(self, method: str, path: str, **kw: Any) -> Response:
        t0 = time.perf_counter()
        try:
            return self.inner.request(method, path, **kw)
        finally:
            self.waiting += time.perf_counter() - t0


from partners.client.verify import Policy  # noqa: E402


@contextmanager
def audit_server(count: int, batch: int, snapshots: bool = True) -> Iterator[tuple[str, Any, str]]:
    """A loopback HTTP server over a log sealed with audit primitives; yields (url, fake hub, collection)."""
    from tests.partners.fakehub import FakeHub, FakeTransport

    hub = FakeHub(now=datetime.now(UTC))
    hub.add_collection("bench")
    t0 = time.perf_counter()
    for start in range(0, count, batch):
        hub.seal("bench", adds=min(batch, count - start), sealed_at=hub.now - timedelta(minutes=5))
    print(
        f"  set-up: sealed {count:,} signals in {len(hub.collections['bench'].payloads)} batches "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    fake = FakeTransport(hub, snapshots=snapshots)
    snap_env, snap_chunks = hub.snapshot("bench")  # computed once, as a hub would cache it
    hub.snapshot = lambda cid: (snap_env, snap_chunks)  # type: ignore[method-assign]
    cache: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, method: str, body_in: Any) -> None:
            hub.now = datetime.now(UTC)
            url = urlsplit(self.path)
            params = {k: v[0] for k, v in parse_qs(url.query).items()}
            key = self.path
            if "/snapshot" in url.path and key in cache:
                body, status = cache[key], 200
            else:
                r = fake.serve(method, url.path, params, body_in)
                body, status = r.body, r.status
                if "/snapshot" in url.path:
                    cache[key] = body
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._send("GET", None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._send("POST", json.loads(self.rfile.read(length) or b"null"))

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hub, "bench"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def hub_server(count: int, batch: int, args: argparse.Namespace) -> Iterator[tuple[str, Any, str]]:
    """The real hub on loopback (waitress in a thread) over a scratch database, set up by its services."""
    # Imported here: --source audit runs where the hub is not installed.
    import servers
    from waitress.server import create_server

    from hub.db import make_engine
    from tests.partners.realhub import RealHub

    tmp = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    chosen = argparse.Namespace(server=args.server, url=args.url or servers.ADMIN)
    with servers.server(chosen) as server, server.database() as scratch:
        print(server.describe())
        engine = make_engine(scratch.app_url)
        try:
            hub = RealHub.start(scratch.app_url, engine, tmp / "var")
            cid = hub.create_collection("bench")
            t0 = time.perf_counter()
            hub.submit(cid, count, per_request=10_000)
            hub.seal(cid, max_entries=batch)
            print(f"  set-up: submitted and sealed {count:,} signals ({time.perf_counter() - t0:.1f} s)")
            http = create_server(hub.app, host="127.0.0.1", port=0, threads=4)
            threading.Thread(target=http.run, daemon=True).start()
            try:
                yield f"http://127.0.0.1:{http.effective_port}", hub, cid
            finally:
                http.close()
        finally:
            engine.dispose()


def session_for(source: str, url: str, hub: Any) -> requests.Session:
    if source == "audit":
        return requests.Session()
    from partners.client.auth import make_session
    from partners.client.config import PartnerConfig

    secret = Path(tempfile.mkdtemp()) / "secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, hub.secret.encode())
    os.close(fd)
    config = PartnerConfig(hub_url=url, client_id=hub.client_id, keyset_sha256=hub.pin, secret_path=str(secret))
    return make_session(config)  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--incremental", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=50_000, help="signals per sealed batch")
    ap.add_argument("--source", choices=["hub", "audit"], default=None)
    ap.add_argument("--no-snapshot", action="store_true", help="first sync by batches, not the snapshot")
    ap.add_argument(
        "--server", choices=["embedded", "external"], default="external", help="--source hub: the hub's PostgreSQL"
    )
    ap.add_argument("--url", default=None, help="--source hub, external server: a role that may create databases")
    args = ap.parse_args()
    source = args.source or ("hub" if importlib.util.find_spec("hub.feed") else "audit")
    print(f"bench_sync: source={source} count={args.count:,} incremental={args.incremental:,}")

    server = (
        audit_server(args.count, args.batch, not args.no_snapshot)
        if source == "audit"
        else hub_server(args.count, args.batch, args)
    )
    with server as (url, hub, cid), tempfile.TemporaryDirectory() as tmp:
        mirror = Mirror.open(f"sqlite:///{tmp}/mirror.db")
        transport = TimedTransport(RequestsTransport(url, session_for(source, url, hub)))
        syncer = Syncer(transport, mirror, hub.pin, Policy(page_limit=100))

        t0 = time.perf_counter()
        report = syncer.sync()
        first = time.perf_counter() - t0
        assert report.ok, report.errors()
        held = sum(1 for _ in mirror.active_signals(cid))
        r = report.results[0]
        how = (
            f"snapshot of {r.snapshot_signals:,} + {r.batches} batches"
            if r.snapshot_signals
            else f"{r.batches} batches"
        )
        print(f"first sync:       {first:7.2f} s  ({held:,} hashes, {how}; target < 60 s)")
        print(f"  of which waiting for the hub: {transport.waiting:.2f} s; the kit: {first - transport.waiting:.2f} s")
        transport.waiting = 0.0

        if source == "audit":
            hub.seal(cid, adds=args.incremental, sealed_at=datetime.now(UTC) - timedelta(seconds=5))
        else:
            hub.submit(cid, args.incremental)
            hub.seal(cid)
        t0 = time.perf_counter()
        report = syncer.sync()
        incremental = time.perf_counter() - t0
        assert report.ok, report.errors()
        held = sum(1 for _ in mirror.active_signals(cid))
        print(f"incremental sync: {incremental:7.3f} s  (+{args.incremental:,} now {held:,}; target < 1 s)")
        print(f"  of which waiting for the hub: {transport.waiting:.3f} s")
        mirror.close()


if __name__ == "__main__":
    main()
