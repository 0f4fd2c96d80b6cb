"""Other layers: byte caps over HTTP, backoff, the webhook receiver, the CLI (config, status, confirm)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from partners.cli.main import main
from partners.client import errors
from partners.client.mirror import Mirror
from partners.client.schedule import Runner, next_delay, parse_duration
from partners.client.sync import Syncer, SyncReport
from partners.client.transport import RequestsTransport, check_status, retry_after_seconds
from partners.client.verify import Policy
from partners.client.webhook import WEBHOOK_PATH, WebhookVerifier, make_server
from tests.partners.fakehub import FakeHub, FakeTransport


class _Big(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        size = int(self.path.rsplit("/", 1)[-1])
        self.send_response(200 if "ok" in self.path else 429)
        if "nolength" not in self.path:
            self.send_header("Content-Length", str(size))
        if "ok" not in self.path:
            self.send_header("Retry-After", "120")
        self.end_headers()
        self.wfile.write(b"x" * size)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Big)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "path", ["/ok/5000", "/ok/nolength/5000"], ids=["announced by Content-Length", "streamed without length"]
)
def test_byte_cap_stops_a_download(http_server: str, path: str) -> None:
    t = RequestsTransport(http_server, requests.Session())
    assert len(t.request("GET", path.replace("5000", "100"), max_bytes=1000).body) == 100
    with pytest.raises(errors.ResponseTooLargeError):
        t.request("GET", path, max_bytes=1000)


def test_429_carries_retry_after(http_server: str) -> None:
    r = RequestsTransport(http_server).request("GET", "/limited/10", max_bytes=100)
    with pytest.raises(errors.RateLimitedError) as e:
        check_status(r, "page")
    assert e.value.retry_after == 120
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0


def test_unreachable_hub_is_a_transport_error() -> None:
    with pytest.raises(errors.TransportError):
        RequestsTransport("http://127.0.0.1:9", timeout=2).request("GET", "/v1/keys", max_bytes=10)


@pytest.mark.parametrize(
    ("failures", "retry_after", "expected"),
    [(0, None, 300), (1, None, 30), (2, None, 60), (3, None, 120), (20, None, 300), (1, 600, 600)],
    ids=[
        "success: the interval",
        "first error",
        "second",
        "third",
        "capped at the interval",
        "Retry-After floor",
    ],
)
def test_backoff(failures: int, retry_after: float | None, expected: float) -> None:
    assert next_delay(300, failures, retry_after) == expected


def test_runner_counts_failures_and_honours_retry_after() -> None:
    results = [errors.RateLimitedError("429", 429, 900.0), errors.TransportError("down"), None]

    def fake_sync(collections: Any) -> SyncReport:
        from partners.client.sync import CollectionResult

        e = results.pop(0)
        return SyncReport([CollectionResult("c1", error=e)])

    runner = Runner(fake_sync, 300)
    assert runner.run_once() == 900
    assert runner.run_once() == 60
    assert runner.run_once() == 300 and runner.failures == 0
    assert parse_duration("5m") == 300 and parse_duration("2h") == 7200


# Webhooks ------------------------------------------------------------------------------------------------


@pytest.fixture
def synced(tmp_path: Path) -> Iterator[tuple[FakeHub, Mirror]]:
    hub = FakeHub()
    hub.add_collection("c1")
    hub.seal("c1", adds=3)
    mirror = Mirror.open(f"sqlite:///{tmp_path / 'm.db'}")
    assert Syncer(FakeTransport(hub), mirror, hub.pin, clock=lambda: hub.now).sync().ok
    yield hub, mirror
    mirror.close()


def _post(url: str, body: bytes) -> requests.Response:
    return requests.post(url, data=body, headers={"Hashfed-Delivery": "d1"}, timeout=5)


def test_webhook_receiver_verifies_and_triggers(synced: tuple[FakeHub, Mirror]) -> None:
    hub, mirror = synced
    triggered: list[str] = []
    verifier = WebhookVerifier(mirror, hub.pin, clock=lambda: hub.now)
    server = make_server("127.0.0.1", 0, verifier, triggered.append)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}{WEBHOOK_PATH}"
    try:
        hub.seal("c1", adds=1)
        fresh = hub.checkpoint("c1", cosigned_at=hub.now).encode()
        r = _post(url, fresh)
        assert r.status_code == 202 and triggered == ["c1"]
        kept = mirror.state("c1")[0].checkpoint
        assert kept is not None
        assert _post(url, kept.note.encode()).status_code == 200  # already known: nothing triggered
        old = hub.checkpoint("c1", cosigned_at=hub.now - timedelta(hours=1)).encode()
        assert _post(url, old).status_code == 400  # outside the replay window
        forged = b"\n".join([fresh.split(b"\n")[0], b"99", *fresh.split(b"\n")[2:]])
        assert _post(url, forged).status_code == 400
        other = hub.checkpoint("c1", cosigned_at=hub.now).replace("collections/c1", "collections/zz").encode()
        assert _post(url, other).status_code == 400
        assert _post(url, b"x" * 10_000).status_code == 413
        assert triggered == ["c1"]
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_fork_is_kept_as_evidence(synced: tuple[FakeHub, Mirror]) -> None:
    hub, mirror = synced
    verifier = WebhookVerifier(mirror, hub.pin, clock=lambda: hub.now)
    forked = hub.checkpoint("c1", 1, root=b"\x09" * 32, cosigned_at=hub.now).encode()
    with pytest.raises(errors.ForkError):
        verifier.verify(forked)
    assert mirror.open_alerts("c1")[0]["served_note"] == forked.decode()


# CLI -----------------------------------------------------------------------------------------------------


def test_enroll_stores_config_0600_and_status_confirm(tmp_path: Path) -> None:
    home = tmp_path / "home"
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    os.chmod(secret, 0o644)
    runner = CliRunner()
    args = [
        "--home",
        str(home),
        "enroll",
        "--hub",
        "https://hub.test",
        "--client-id",
        "c",
        "--secret-file",
        str(secret),
        "--keyset-sha256",
        "ab" * 32,
    ]
    bad = runner.invoke(main, args)
    assert bad.exit_code != 0 and "chmod 600" in bad.output
    os.chmod(secret, 0o600)
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    config = json.loads((home / "config.json").read_text())
    assert config["secret_path"] == str(secret) and "s3cret" not in (home / "config.json").read_text()
    assert (home / "config.json").stat().st_mode & 0o777 == 0o600
    status = runner.invoke(main, ["--home", str(home), "status"])
    assert status.exit_code == 0 and "nothing synced yet" in status.output
    mirror = Mirror.open(f"sqlite:///{(home / 'mirror.db').resolve()}")
    mirror.hold("c1", 7, "00" * 32, 40, 100)
    mirror.close()
    status = runner.invoke(main, ["--home", str(home), "status"])
    assert "HELD batch 7" in status.output
    wrong = runner.invoke(main, ["--home", str(home), "confirm", "c1", "--seq", "8"])
    assert wrong.exit_code != 0
    ok = runner.invoke(main, ["--home", str(home), "confirm", "c1", "--seq", "7"])
    assert ok.exit_code == 0 and "will be applied" in ok.output


def test_policy_defaults() -> None:
    assert Policy().max_removal_share == 0.05


def test_runner_runs_now_then_on_push_and_stops() -> None:
    import threading as th

    from partners.client.sync import CollectionResult

    calls: list[Any] = []
    done = th.Event()

    def fake_sync(collections: Any) -> SyncReport:
        calls.append(collections)
        if len(calls) == 2:
            done.set()
        return SyncReport([CollectionResult("c1")])

    runner = Runner(fake_sync, 3600, 0)
    runner.start()
    try:
        for _ in range(50):
            if calls:
                break
            th.Event().wait(0.1)
        runner.trigger("c1")
        assert done.wait(5)
    finally:
        runner.stop()
    assert calls == [None, ["c1"]]
