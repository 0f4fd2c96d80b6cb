"""The kit's report queue against a real hub on loopback that goes down and comes back: nothing is lost,
nothing arrives twice."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import func, select, update
from werkzeug.serving import make_server

from hub.app import create_app
from hub.config import Settings
from hub.db import make_session_factory
from hub.reports.models import Report, ReportOutcome
from hub.transparency.models import AuditEntry
from partners.cli.main import main as cli
from partners.client import config as cfg
from partners.client.reports import MatchedSignal, ReportQueue, ReportQueueError, outbox
from partners.client.transport import RequestsTransport
from tests.hub import factories as f
from tests.hub import reportkit as rk


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Hub:
    """The hub's WSGI app served by werkzeug on a fixed loopback port, stopped and started at will."""

    def __init__(self, app, port: int) -> None:
        self.app, self.port, self.server = app, port, None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def hub(fresh_database, tmp_path) -> Iterator[tuple[Hub, rk.World, Settings, object]]:
    port = _free_port()
    settings = Settings(
        var_dir=tmp_path / "var", database_url=fresh_database.app_url, base_url=f"http://127.0.0.1:{port}",
        hub_name="hub.test",
    )
    factory = make_session_factory(fresh_database.engine)
    with factory.begin() as s:
        w = rk.build(s, settings)
    h = Hub(create_app(settings, engine=fresh_database.engine), port)
    try:
        yield h, w, settings, factory
    finally:
        h.stop()


def _transport(h: Hub, token: str) -> RequestsTransport:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return RequestsTransport(h.url, session, timeout=5)


def _hub_state(factory) -> tuple[int, int, int]:
    with factory() as s:
        f.as_system(s)
        return tuple(  # type: ignore[return-value]
            s.scalar(select(func.count()).select_from(t)) for t in (Report, ReportOutcome, AuditEntry)
        )


def test_reports_made_while_the_hub_is_down_arrive_exactly_once(hub, tmp_path):
    h, w, _settings, factory = hub
    queue = ReportQueue.open(tmp_path / "kit" / "reports.db")
    transport = _transport(h, w.token_a)
    found = [MatchedSignal(w.c.id, w.signals[i], 2, i) for i in range(2)]
    ids = queue.enqueue_matches(found, content_ref="upload-1")
    ids.append(
        queue.enqueue_report(
            collection=w.c.id, seq=2, distance=0, surface="existing_content", content_ref="upload-2",
            signal_type="pdq", signal_value=w.values[2], outcome="removed", automated_decision=False,
        )
    )
    start = _hub_state(factory)

    down = queue.flush(transport)  # the hub is not running
    assert down.error is not None and down.sent == 0 and down.waiting == 3
    assert _hub_state(factory) == start

    h.start()
    up = queue.flush(transport)
    assert (up.sent, up.rejected, up.waiting, up.error) == (3, 0, 0, None)
    reports, outcomes, entries = _hub_state(factory)
    assert (reports, outcomes, entries) == (start[0] + 3, start[1] + 3, start[2] + 1)

    # An outcome change made while the hub is down again.
    h.stop()
    queue.enqueue_outcome(ids[0], "removed")
    assert queue.flush(transport).waiting == 1
    h.start()
    assert queue.flush(transport).sent == 1
    after = _hub_state(factory)
    assert after == (reports, outcomes + 1, entries + 1)

    # The hub committed but the answers were lost: everything is sent again, and nothing changes.
    with queue.engine.begin() as conn:
        conn.execute(update(outbox).values(sent_at=None))
    again = queue.flush(transport)
    assert (again.sent, again.waiting, again.error) == (4, 0, None)
    assert _hub_state(factory) == after
    got = transport.request("GET", f"/v1/reports/{ids[0]}", max_bytes=1 << 20).json()
    assert [x["outcome"] for x in got["history"]] == ["pending_review", "removed"]
    assert set(queue.reports_for_ref("upload-1")) == set(ids[:2])
    queue.close()


def test_a_report_the_hub_refuses_is_rejected_and_the_others_still_go(hub, tmp_path):
    h, w, _settings, _factory = hub
    h.start()
    queue = ReportQueue.open(tmp_path / "reports.db")
    good = queue.enqueue_report(collection=w.c.id, seq=2, distance=3, surface="upload", content_ref="a",
                                signal_id=w.signals[0])
    bad = queue.enqueue_report(collection=w.c.id, seq=1, distance=3, surface="upload", content_ref="b",
                               signal_id=w.signals[2])  # seq 1 is before the batch that added it
    queue.enqueue_outcome(bad, "removed")
    result = queue.flush(_transport(h, w.token_a))
    assert (result.sent, result.rejected, result.waiting) == (1, 2, 0)
    rejected = queue.rejected()
    assert rejected[0][:2] == ("report", bad) and "before the batch" in rejected[0][2]
    assert rejected[1][:2] == ("outcome", bad)
    assert _transport(h, w.token_a).request("GET", f"/v1/reports/{good}", max_bytes=1 << 20).status == 200
    with pytest.raises(ReportQueueError):
        queue.enqueue_outcome("never-made", "removed")
    with pytest.raises(ReportQueueError):
        queue.enqueue_report(collection="c", seq=1, distance=0, surface="email", content_ref="x", signal_id="s")


def test_the_report_command_queues_while_down_and_sends_when_up(hub, tmp_path):
    h, w, settings, factory = hub
    with factory.begin() as s:
        client = f.client(s, w.a, scopes=["reports:write"], hub_secret=f.hub_secret(settings))
    secret = tmp_path / "secret"
    secret.write_text(client.secret or "")
    secret.chmod(0o600)
    home = tmp_path / "home"
    cfg.save(home, cfg.PartnerConfig(hub_url=h.url, client_id=client.client_id, keyset_sha256="0" * 64,
                                     secret_path=str(secret)))
    queue = ReportQueue.open(home / "reports.db")
    h.start()
    (rid,) = queue.enqueue_matches([MatchedSignal(w.c.id, w.signals[0], 1, 5)], content_ref="post-77")
    assert queue.flush(_transport(h, w.token_a)).sent == 1
    h.stop()
    runner = CliRunner()
    r = runner.invoke(cli, ["--home", str(home), "report", "--outcome", "removed", "--ref", "post-77"])
    assert r.exit_code == 0, r.output
    assert "queued outcome removed for 1 report(s)" in r.output and "waiting 1" in r.output
    r = runner.invoke(cli, ["--home", str(home), "report", "--send-only"])
    assert r.exit_code == 1 and "waiting 1" in r.output
    h.start()
    r = runner.invoke(cli, ["--home", str(home), "report", "--send-only"])
    assert r.exit_code == 0 and "sent 1, rejected 0, waiting 0" in r.output, r.output
    got = _transport(h, w.token_a).request("GET", f"/v1/reports/{rid}", max_bytes=1 << 20).json()
    assert got["outcome"] == "removed" and got["automated_decision"] is False
    r = runner.invoke(cli, ["--home", str(home), "report", "--outcome", "removed", "--ref", "unknown"])
    assert r.exit_code != 0 and "no report was made" in r.output
    assert json.loads((home / "config.json").read_text())["scope"] == "feed:read"  # config untouched
