"""The embedded default: a private PostgreSQL under var/pg that `hashfed` commands start, share and stop.

These run the real commands in subprocesses (as `make run` does): init, serve, a CLI command while serving,
then Ctrl-C or SIGTERM; afterwards no postgres of that data directory may be left running. The hub connects as
the application role, so row-level security holds exactly as in production.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
from sqlalchemy import text

from hub.db import make_engine
from hub.ops import embedded
from tests.ports import free_port

BIN = Path(sys.executable).parent


def _postgres_of(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(attrs=("name", "cmdline")):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(pgdata) in cmdline:
            found.append(proc)
    return found


def _env(var: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHFED_")}
    env.update(HASHFED_VAR_DIR=str(var), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


def _run(var: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BIN / "hashfed", *args], env=_env(var), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_starts_shares_and_stops_the_private_server(tmp_path: Path, stop: signal.Signals) -> None:
    var = tmp_path / "var"
    port = free_port()
    made = _run(var, "init", "--base-url", f"http://127.0.0.1:{port}")
    assert made.returncode == 0, made.stdout + made.stderr
    pgdata = (var / embedded.PG_DIR).resolve()
    assert stat.S_IMODE(pgdata.stat().st_mode) == 0o700
    assert not _postgres_of(pgdata), "init left its server running"

    hub = subprocess.Popen([BIN / "hashfed", "serve", "--port", str(port)], env=_env(var),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert hub.poll() is None, hub.stdout.read() if hub.stdout else ""
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        running = _postgres_of(pgdata)
        assert running
        # Unix socket only: no listen address in postmaster.pid, no inet socket on the postmaster.
        postmaster = (pgdata / "postmaster.pid").read_text().splitlines()
        assert postmaster[5].strip() == "", postmaster
        assert psutil.Process(int(postmaster[0])).net_connections(kind="inet") == []
        # A command run while the hub serves joins the same server and leaves it running.
        joined = _run(var, "partner", "create", "acme", "--kind", "platform")
        assert joined.returncode == 0 and "partner id: " in joined.stdout, joined.stderr
        assert {p.pid for p in _postgres_of(pgdata)} >= {p.pid for p in running}
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    finally:
        hub.send_signal(stop)
        try:
            hub.wait(timeout=30)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait()
    deadline = time.monotonic() + 15
    while _postgres_of(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _postgres_of(pgdata), "the hub left its PostgreSQL running"


def test_the_hub_connects_as_the_application_role_and_row_level_security_holds(tmp_path: Path) -> None:
    var = tmp_path / "var"
    made = _run(var, "init", "--base-url", "https://hub.example.org")
    assert made.returncode == 0, made.stderr
    for name in ("one", "two"):
        assert _run(var, "partner", "create", name, "--kind", "platform").returncode == 0
        assert _run(var, "client", "create", name, "--scope", "feed:read").returncode == 0
    server = embedded.start(var)
    try:
        engine = make_engine(server.app_url)
        with engine.connect() as conn:
            role = conn.scalar(text("SELECT current_user"))
            bypass = conn.scalar(text("SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = current_user"))
            owns = conn.scalar(text("SELECT count(*) FROM pg_tables WHERE tableowner = current_user"))
            assert (role, bypass, owns) == (embedded.APP_ROLE, False, 0)
            # As the hub serves partner "one": the other partner's client is invisible.
            one = conn.scalar(text("SELECT id FROM partners WHERE name = 'one'"))
            conn.execute(text("SELECT set_config('hashfed.partner', :p, false)"), {"p": one})
            visible = conn.scalars(text("SELECT partner_id FROM oauth_clients")).all()
            assert visible == [one]
            conn.execute(text("SELECT set_config('hashfed.partner', '', false)"))
            assert conn.scalars(text("SELECT partner_id FROM oauth_clients")).all() == []
        engine.dispose()
    finally:
        server.close()
    assert not _postgres_of((var / embedded.PG_DIR).resolve())
