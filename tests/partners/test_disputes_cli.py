"""`hashfed-partner dispute` and `disputes` against a real hub on loopback: a dispute opened from the kit's
report ledger, idempotent under the id the kit derives from the report, its decisions shown, and the exact
response shapes the kit accepts."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import make_server

from hub import rls
from hub.app import create_app
from hub.config import Settings
from hub.db import make_session_factory
from hub.governance import service as governance
from hub.governance.models import Dispute
from hub.transparency.models import AuditEntry
from partners.cli.main import main as cli
from partners.client import config as cfg
from partners.client.auth import make_session
from partners.client.disputes import dispute_key, parse_dispute
from partners.client.errors import MalformedResponseError
from partners.client.reports import MatchedSignal, ReportQueue
from partners.client.transport import RequestsTransport
from tests.conftest import Database
from tests.hub import factories as f
from tests.hub import reportkit as rk
from tests.ports import free_port


@dataclass
class Kit:
    home: Path
    w: rk.World
    factory: sessionmaker[Session]

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(cli, ["--home", str(self.home), *args])

    def hub_counts(self) -> tuple[int, int]:
        """Disputes, and audit entries other than the kit's token requests (each token issued is audited)."""
        with self.factory() as s:
            rls.set_tenant(s, rls.SYSTEM)
            actions = [json.loads(e)["action"] for e in s.scalars(select(AuditEntry.entry))]
            return s.scalar(select(func.count()).select_from(Dispute)) or 0, sum(a != "token.issue" for a in actions)


@pytest.fixture
def kit(fresh_database: Database, tmp_path: Path) -> Iterator[Kit]:
    """Partner a's kit (a reports:write client) with reports for post-9 (signal 0) and post-10 (a signal of a
    collection it does not read), and the hub serving on loopback."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(var_dir=tmp_path / "var", database_url=fresh_database.app_url, base_url=url,
                        hub_name="hub.test")
    factory = make_session_factory(fresh_database.engine)
    with factory.begin() as s:
        w = rk.build(s, settings)
        client = f.client(s, w.a, scopes=["reports:write"], hub_secret=f.hub_secret(settings))
    secret = tmp_path / "secret"
    secret.write_text(client.secret or "")
    secret.chmod(0o600)
    home = tmp_path / "kit"
    cfg.save(home, cfg.PartnerConfig(hub_url=url, client_id=client.client_id, keyset_sha256="0" * 64,
                                     secret_path=str(secret)))
    queue = ReportQueue.open(home / "reports.db")
    queue.enqueue_matches([MatchedSignal(w.c.id, w.signals[0], 1, 4)], content_ref="post-9")
    queue.enqueue_matches([MatchedSignal(w.other.id, w.other_signal, 1, 0)], content_ref="post-10")
    queue.enqueue_report(collection=w.c.id, seq=2, distance=0, surface="upload", content_ref="post-11",
                         signal_type="pdq", signal_value="ab" * 32)  # a value the mirror does not hold
    queue.close()
    server = make_server("127.0.0.1", port, create_app(settings, engine=fresh_database.engine), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Kit(home, w, factory)
    finally:
        server.shutdown()
        server.server_close()


def labelled(output: str, label: str) -> str:
    return next(line.split(": ", 1)[1] for line in output.splitlines() if line.startswith(f"{label}: "))


def test_a_dispute_from_a_report_is_opened_once_and_shows_its_decisions(kit: Kit):
    w = kit.w
    before = kit.hub_counts()
    first = kit.run("dispute", "--ref", "post-9", "--reason", "false_positive", "--note", "a cartoon")
    assert first.exit_code == 0, first.output
    dispute_id = labelled(first.output, "dispute id")
    assert labelled(first.output, "new") == "yes" and labelled(first.output, "status") == "open"
    assert labelled(first.output, "signal") == w.signals[0] and labelled(first.output, "collection") == w.c.id
    assert labelled(first.output, "note") == "a cartoon"
    assert kit.hub_counts() == (before[0] + 1, before[1] + 1)
    with kit.factory() as s:
        rls.set_tenant(s, rls.SYSTEM)
        report_id = s.get(Dispute, dispute_id).dispute_key.removeprefix("report-")  # type: ignore[union-attr]
    assert dispute_key(report_id) == f"report-{report_id}"

    again = kit.run("dispute", "--ref", "post-9", "--reason", "false_positive", "--note", "a cartoon", "--json")
    assert again.exit_code == 0, again.output
    view = json.loads(again.output)
    assert (view["id"], view["new"], view["report"]) == (dispute_id, "no (opened before)", report_id)
    assert kit.hub_counts() == (before[0] + 1, before[1] + 1)

    with kit.factory.begin() as s:
        governance.decide(s, dispute_id=dispute_id, action="quarantine", reason="checking with the source",
                          staff=governance.Staff.operator(), four_eyes=True)
    shown = kit.run("dispute", "--show", dispute_id)
    assert shown.exit_code == 0, shown.output
    assert labelled(shown.output, "status") == "quarantined"
    assert labelled(shown.output, "decision").endswith(" quarantine (effective): checking with the source")
    as_json = json.loads(kit.run("dispute", "--show", dispute_id, "--json").output)
    assert [(d["action"], d["state"]) for d in as_json["decisions"]] == [("quarantine", "effective")]

    listed = kit.run("disputes")
    assert listed.exit_code == 0 and listed.output.startswith(f"{dispute_id}\tquarantined\tfalse_positive\t")
    assert kit.run("disputes", "--status", "open").output == ""
    assert kit.run("disputes", "--contributed").output == ""  # partner a contributed nothing


REFUSALS = {
    "unknown reason": (["--ref", "post-9", "--reason", "dislike"], 2, "Invalid value for '--reason'"),
    "no reason": (["--ref", "post-9"], 2, "give --reason and either --ref or --id"),
    "show with others": (["--show", "x", "--reason", "other"], 2, "--show takes no other option"),
    "unknown ref": (["--ref", "post-404", "--reason", "other"], 1, "no report was made for reference 'post-404'"),
    "unknown report": (["--id", "never-made", "--reason", "other"], 1, "no report 'never-made' was made by this kit"),
    "unreadable signal": (["--ref", "post-10", "--reason", "other"], 1, "the hub answered 404 (no such signal)"),
    "value not in mirror": (["--ref", "post-11", "--reason", "other"], 1, "named its signal by value"),
    "unknown dispute": (["--show", "0" * 36], 1, "the hub answered 404 (no such dispute)"),
}


def test_refusals_exit_non_zero_and_write_nothing(kit: Kit):
    before = kit.hub_counts()
    for name, (args, code, message) in REFUSALS.items():
        r = kit.run("dispute", *args)
        assert r.exit_code == code and message in r.output, (name, r.output)
    assert kit.hub_counts() == before

    assert kit.run("dispute", "--ref", "post-9", "--reason", "consent").exit_code == 0
    before = kit.hub_counts()
    r = kit.run("dispute", "--ref", "post-9", "--reason", "other")  # the same report, another body
    assert r.exit_code == 1 and "422 (this id was used for another dispute)" in r.output
    assert kit.hub_counts() == before


def _drop(d: dict, key: str) -> dict:
    del d[key]
    return d


SHAPES = {
    "extra key": lambda d: {**d, "extra": 1},
    "missing key": lambda d: _drop(d, "note"),
    "unknown status": lambda d: {**d, "status": "closed"},
    "seq as text": lambda d: {**d, "audit_seq": "7"},
    "null signal": lambda d: {**d, "signal": None},
    "decisions an object": lambda d: {**d, "decisions": {}},
    "decision extra key": lambda d: {**d, "decisions": [{**d["decisions"][0], "by": "x"}]},
    "decision missing key": lambda d: {**d, "decisions": [_drop(dict(d["decisions"][0]), "confirms")]},
    "wrapped in a list": lambda d: [d],
}


def test_the_kit_accepts_only_the_shape_the_hub_serves(kit: Kit):
    r = kit.run("dispute", "--ref", "post-9", "--reason", "false_positive", "--json")
    dispute_id = json.loads(r.output)["id"]
    with kit.factory.begin() as s:
        governance.decide(s, dispute_id=dispute_id, action="reject", reason="it is the imagery",
                          staff=governance.Staff.operator(), four_eyes=True)
    config = cfg.load(kit.home)
    transport = RequestsTransport(config.hub_url, make_session(replace(config, scope="reports:write")))
    try:
        served = transport.request("GET", f"/v1/disputes/{dispute_id}", max_bytes=1 << 20).json()
    finally:
        transport.close()
    parsed = parse_dispute(served)
    assert parsed.status == "rejected" and parsed.decisions and parsed.decisions[0].action == "reject"
    # One server, one wire shape: each case is a change the kit must refuse.
    for name, change in SHAPES.items():
        with pytest.raises(MalformedResponseError):
            parse_dispute(change(copy.deepcopy(served)))
            pytest.fail(f"accepted: {name}")
