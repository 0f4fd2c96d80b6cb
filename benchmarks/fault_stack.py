"""The processes the fault and load scripts run, each started and killed on its own.

A private PostgreSQL cluster (tests/pgcluster.py: the embedded wheel's programs, a temporary folder, Unix
socket only), `hashfed serve` (gunicorn) connected as the
application role, and `hashfed scheduler`. Partners, OAuth clients and a collection are made through the
hub's own services as the owner. Used by benchmarks/fault_crash.py and benchmarks/load_partners.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from sqlalchemy import text  # noqa: E402

from hub import rls  # noqa: E402
from hub.config import Settings  # noqa: E402
from hub.db import make_engine, make_session_factory  # noqa: E402
from hub.feed import collections  # noqa: E402
from hub.feed.models import Access  # noqa: E402
from hub.identity import tenants  # noqa: E402
from hub.transparency.auditlog import Actor  # noqa: E402
from hub.transparency.keys import HubKeys, keyset_record  # noqa: E402
from tests.pgcluster import Cluster  # noqa: E402
from tests.ports import free_port  # noqa: E402

BIN = Path(sys.executable).parent
APP_ROLE = "hashfed_app"
DATABASE = "hashfed"

# Durability as in production (fsync and synchronous commits on). The WAL writer is slowed down so that a
# commit the hub did not flush itself stays unflushed until a crash: only the hub's own flush makes it durable.
SERVER_SETTINGS = {
    "listen_addresses": "''",
    "fsync": "on",
    "synchronous_commit": "on",
    "wal_writer_delay": "10s",
    "wal_writer_flush_after": "1GB",
    "max_connections": "300",
}


class Proc:
    """A hub command in a process group of its own, so SIGKILL takes gunicorn's workers with the master."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name, self.args, self.env, self.log = name, args, dict(env), log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.popen = subprocess.Popen(self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        out.close()

    def kill9(self) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait()
        self.popen = None

    def stop(self) -> None:
        """SIGTERM (a graceful stop), then SIGKILL after 20 s."""
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            self.kill9()
        self.popen = None


@dataclass
class Client:
    """An OAuth client (client_secret_basic) of one partner."""

    partner_id: str
    client_id: str
    secret: str


class Stack:
    """Cluster + hub + scheduler in `work`, with the settings every process shares."""

    def __init__(self, work: Path, *, workers: int = 2, threads: int = 8, seal_interval_s: int = 1,
                 checkpoint_interval_s: int = 1, server_settings: Mapping[str, str] | None = None) -> None:
        self.work = work
        self.cluster = Cluster.make(server_settings or SERVER_SETTINGS, prefix="hashfed-fault-")
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.owner_url = self.cluster.url(database=DATABASE)
        self.app_url = self.cluster.url(APP_ROLE, DATABASE)
        self.common = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),  # to run another checkout of the hub
            "HASHFED_VAR_DIR": str(work / "var"),
            "HASHFED_BASE_URL": self.base_url,
            "HASHFED_LOG_LEVEL": "WARNING",
            "HASHFED_SEAL_INTERVAL_S": str(seal_interval_s),
            "HASHFED_AUDIT_CHECKPOINT_INTERVAL_S": str(checkpoint_interval_s),
            "HASHFED_TOKEN_RATE_LIMIT": "100000/minute",
            "HASHFED_TOKEN_RATE_LIMIT_ADDRESS": "100000/minute",
            "HASHFED_TOKEN_TTL_S": "3600",
        }
        logs = work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.hub = Proc("hub", [str(BIN / "hashfed"), "serve", "--port", str(self.port), "--workers", str(workers),
                                "--threads", str(threads)], self.env(self.app_url), logs / "hub.log")
        self.scheduler = Proc("scheduler", [str(BIN / "hashfed"), "scheduler"], self.env(self.app_url),
                              logs / "scheduler.log")

    def env(self, url: str) -> dict[str, str]:
        return {**self.common, "HASHFED_DATABASE_URL": url}

    def settings(self) -> Settings:
        """The owner's settings, as the CLI would read them."""
        return Settings.from_env({k: v for k, v in self.env(self.owner_url).items() if k.startswith("HASHFED_")})

    def hashfed(self, *args: str, url: str | None = None) -> str:
        done = subprocess.run([str(BIN / "hashfed"), *args], env=self.env(url or self.owner_url),
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"hashfed {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def create(self) -> None:
        self.cluster.init()
        engine = make_engine(self.cluster.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {DATABASE}"))
        finally:
            engine.dispose()
        self.hashfed("init")
        self.hashfed("db", "grant", APP_ROLE, "--create")

    def start_hub(self, timeout: float = 90.0) -> None:
        self.hub.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.hub.popen is not None and self.hub.popen.poll() is not None:
                raise RuntimeError(f"the hub exited; see {self.hub.log}")
            time.sleep(0.1)
        raise RuntimeError(f"the hub was not ready in {timeout} s; see {self.hub.log}")

    def close(self) -> None:
        for p in (self.hub, self.scheduler):
            p.kill9()
        self.cluster.remove()

    # --- set-up through the hub's services, as the owner ---------------------------------------------------

    def provision(self, *, contributors: int, readers: int, reader_scopes: tuple[str, ...] = ("feed:read",
                  "reports:write")) -> tuple[str, list[Client], list[Client]]:
        """One collection (md5) owned by the first contributor; returns (collection id, contributors, readers)."""
        settings = self.settings()
        engine = make_engine(self.owner_url)
        try:
            with make_session_factory(engine, early_release=False).begin() as s:
                rls.set_tenant(s, rls.SYSTEM)
                keys = HubKeys.load(settings, s)
                op = Actor.operator()

                def client(name: str, kind: str, scopes: list[str]) -> Client:
                    p = tenants.create_partner(s, name, kind, op)
                    issued = tenants.create_client(s, p.id, "bench", scopes, hub_secret=keys.hub_secret, actor=op)
                    return Client(p.id, issued.client.client_id, issued.secret or "")

                writers = [client(f"intake-{i}", "intake", ["hashes:write", "feed:read"]) for i in range(contributors)]
                c = collections.create_collection(
                    s, slug="bench", owner_id=writers[0].partner_id, category="ncii", signal_types=["md5"],
                    pdq_threshold=31, min_quality=50, actor=op, hub_name=keys.hub_name,
                    signer=keys.signer("collection"),
                )
                for w in writers[1:]:
                    collections.set_access(s, c.id, w.partner_id, Access.CONTRIBUTOR, True, actor=op,
                                           hub_name=keys.hub_name, signer=keys.signer("collection"))
                reading = [client(f"partner-{i}", "platform", list(reader_scopes)) for i in range(readers)]
                for r in reading:
                    collections.set_access(s, c.id, r.partner_id, Access.READER, True, actor=op,
                                           hub_name=keys.hub_name, signer=keys.signer("collection"))
                return c.id, writers, reading
        finally:
            engine.dispose()

    def pin(self) -> str:
        engine = make_engine(self.owner_url)
        try:
            with make_session_factory(engine)() as s:
                return keyset_record(s, 1).payload_sha256
        finally:
            engine.dispose()


def token(base_url: str, c: Client, scope: str, session: requests.Session | None = None) -> str:
    r = (session or requests).post(f"{base_url}/oauth/token", data={"grant_type": "client_credentials", "scope": scope},
                                   auth=(c.client_id, c.secret), timeout=30)
    r.raise_for_status()
    return str(r.json()["access_token"])
