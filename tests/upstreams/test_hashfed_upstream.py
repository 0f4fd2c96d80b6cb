"""Two hubs on loopback: hub B follows a collection of hub A as an upstream, through the partner kit's verified sync.

A hash submitted to A reaches B's feed (with its provenance in B's batch entry and audit entry) and a partner kit
synced from B; retired on A, it leaves both. A tampered answer from A, or a wrong pinned key set, stops B's
import with nothing applied, and B's /readyz says why.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from flask import Flask, Response, request
from sqlalchemy import func, select

from audit.payloads import BatchPayload
from hub.cli.main import main
from hub.feed import signals
from hub.feed.models import Batch, PendingChange, Signal
from hub.transparency.auditlog import Actor
from hub.transparency.models import AuditEntry
from hub.upstreams import pull, service
from hub.upstreams.models import Upstream
from partners.client.mirror import Mirror
from partners.client.sync import Syncer
from tests.conftest import _made_database
from tests.partners.realhub import HUB_NAME, FlaskTransport, RealHub, pdq
from tests.ports import free_port, serving

pytestmark = pytest.mark.slow


def _tampering_proxy(upstream: str) -> Flask:
    """Forwards to `upstream`, flipping one byte of every batch payload it passes on."""
    app = Flask("tamper")

    @app.route("/<path:path>", methods=["GET", "POST"])
    def forward(path: str) -> Response:
        headers = {k: v for k, v in request.headers if k.lower() in ("authorization", "content-type")}
        r = requests.request(request.method, f"{upstream}/{path}", params=request.args, data=request.get_data(),
                             headers=headers, timeout=10)
        body = r.content
        if path.endswith("/batches") and r.status_code == 200:
            page = json.loads(body)
            for envelope in page["batches"]:
                payload = bytearray(base64.b64decode(envelope["payload"]))
                payload[payload.index(b'"value":"') + 9] ^= 0x01  # one bit of the first hash value
                envelope["payload"] = base64.b64encode(bytes(payload)).decode()
            body = json.dumps(page).encode()
        return Response(body, status=r.status_code, content_type=r.headers.get("Content-Type"))

    return app


@dataclass
class Hubs:
    a: RealHub
    b: RealHub
    a_url: str
    ca: str  # A's collection, followed by B
    cb: str  # B's collection, fed by A
    tmp: Path

    def pull(self) -> list[str]:
        return pull.pull_upstreams(self.b.factory, datetime.now(UTC), settings=self.b.settings)

    def kit_sync(self, name: str) -> set[str]:
        """A partner of B syncs B's collection into its own mirror; the values it holds."""
        mirror = Mirror.open(f"sqlite:///{self.tmp / f'{name}.db'}")
        try:
            report = Syncer(FlaskTransport(self.b), mirror, self.b.pin).sync([self.cb])
            assert report.ok, report.errors()
            return {s.value for s in mirror.active_signals(self.cb)}
        finally:
            mirror.close()

    def b_values(self) -> set[str]:
        with self.b.session() as s:
            active = select(Signal.value).where(Signal.collection_id == self.cb, Signal.status == "active")
            return set(s.scalars(active))


@pytest.fixture
def hubs(tmp_path: Path) -> Iterator[Hubs]:
    with _made_database() as dba, _made_database() as dbb:
        port = free_port()
        a = RealHub.start(dba.app_url, dba.engine, tmp_path / "a", base_url=f"http://127.0.0.1:{port}")
        b = RealHub.start(dbb.app_url, dbb.engine, tmp_path / "b", base_url=f"http://127.0.0.1:{free_port()}")
        ca = a.create_collection("ncii-a")
        cb = b.create_collection("ncii-b")
        a.submit(ca, 25)
        a.seal(ca)
        with serving(a.app, port) as url:
            with b.session() as s:
                service.add(
                    s, name="hub-a", kind="hashfed", url=url, collection=cb, partner=None,
                    credentials={"client_secret": a.secret}, hub_secret=b.keys(s).hub_secret,
                    actor=Actor.operator(), upstream_collection=ca, client_id=a.client_id, keyset_sha256=a.pin,
                )
            yield Hubs(a, b, url, ca, cb, tmp_path)
            a.engine.dispose()
            b.engine.dispose()


def test_a_hash_submitted_then_retired_upstream_reaches_and_leaves_the_feed_and_a_kit(hubs):
    a_values = {pdq(i) for i in range(25)}
    assert hubs.pull() == ["hub-a: +25 -0 (skipped 0) at 1"]
    assert hubs.b_values() == a_values
    with hubs.b.session() as s:
        pending = s.scalars(select(PendingChange).where(PendingChange.collection_id == hubs.cb)).all()
        assert len(pending) == 25
        by_signal = {p.signal_id: json.loads(p.provenance) for p in pending}
        assert all(p["upstream"] == "hub-a" and p["seq"] == 1 for p in by_signal.values())
        assert {p["signal"] for p in by_signal.values()} == set(hubs.a.ids[hubs.ca])
        entry = s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)).one()
        text = bytes(entry.entry).decode()
        assert '"upstream.import"' in text and '"upstream":"hub-a"' in text
        assert {p.audit_seq for p in pending} == {entry.seq}  # each batch entry points at its import
    hubs.b.seal(hubs.cb)
    with hubs.b.session() as s:
        payload = BatchPayload.from_bytes(bytes(s.scalar(select(Batch.payload).where(Batch.collection_id == hubs.cb))))
    assert {a.value for a in payload.adds} == a_values
    assert {(a.provenance.upstream, a.provenance.seq) for a in payload.adds if a.provenance} == {("hub-a", 1)}
    assert {a.provenance.signal for a in payload.adds if a.provenance} == set(hubs.a.ids[hubs.ca])
    # The partner kit's verifier takes batch entries with a provenance.
    assert hubs.kit_sync("kit") == a_values

    # Nothing new upstream: a pull feeds nothing and writes nothing, not even an audit entry.
    with hubs.b.session() as s:
        entries = s.scalar(select(func.count()).select_from(AuditEntry))
    assert hubs.pull() == ["hub-a: +0 -0 (skipped 0) at 1"]
    with hubs.b.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == entries

    # Staff on A retire one hash, and a new one arrives: B removes it and adds the other, and so does the kit.
    retired_id = hubs.a.ids[hubs.ca][3]
    with hubs.a.session() as s:
        retired = s.get(Signal, retired_id).value
        signals.retire(s, collection_id=hubs.ca, signal_id=retired_id, actor=Actor.operator())
    hubs.a.submit(hubs.ca, 1)
    hubs.a.seal(hubs.ca)
    assert hubs.pull() == ["hub-a: +1 -1 (skipped 0) at 2"]
    expected = (a_values - {retired}) | {pdq(25)}
    assert hubs.b_values() == expected
    hubs.b.seal(hubs.cb)
    assert hubs.kit_sync("kit") == expected
    ready = hubs.b.app.test_client().get("/readyz").get_json()
    assert ready["checks"]["upstreams"] == "ok"


def test_a_tampered_answer_or_a_wrong_pin_stops_the_import_with_nothing_applied(hubs):
    assert hubs.pull()[0].startswith("hub-a: +25")
    hubs.b.seal(hubs.cb)
    hubs.a.submit(hubs.ca, 2)
    hubs.a.seal(hubs.ca)
    with serving(_tampering_proxy(hubs.a_url)) as proxy:
        with hubs.b.session() as s:
            s.scalars(select(Upstream)).one().url = proxy
        before = hubs.b_values()
        with hubs.b.session() as s:
            entries = s.scalar(select(func.count()).select_from(AuditEntry))
        assert hubs.pull() == ["hub-a: failed"]
        assert hubs.b_values() == before
        with hubs.b.session() as s:
            assert s.scalar(select(func.count()).select_from(PendingChange)) == 0
            upstream = s.scalars(select(Upstream)).one()
            assert upstream.position == 1 and upstream.last_error is not None
            assert "signature" in upstream.last_error or "envelope" in upstream.last_error, upstream.last_error
            assert s.scalar(select(func.count()).select_from(AuditEntry)) == entries  # no import recorded
        ready = hubs.b.app.test_client().get("/readyz")
        assert ready.status_code == 200  # the hub still serves; the upstream is reported
        assert ready.get_json()["checks"]["upstreams"].startswith("hub-a: ")

    # The untampered upstream again: the next pull feeds what was held back.
    with hubs.b.session() as s:
        s.scalars(select(Upstream)).one().url = hubs.a_url
    assert hubs.pull() == ["hub-a: +2 -0 (skipped 0) at 2"]
    assert hubs.b.app.test_client().get("/readyz").get_json()["checks"]["upstreams"] == "ok"

    # An upstream pinned to another key set: refused before anything is read.
    other = hubs.b.create_collection("ncii-b2")
    with hubs.b.session() as s:
        service.add(s, name="hub-a-wrong-pin", kind="hashfed", url=hubs.a_url, collection=other, partner=None,
                    credentials={"client_secret": hubs.a.secret}, hub_secret=hubs.b.keys(s).hub_secret,
                    actor=Actor.operator(), upstream_collection=hubs.ca, client_id=hubs.a.client_id,
                    keyset_sha256="ab" * 32)
    assert sorted(hubs.pull()) == ["hub-a-wrong-pin: failed", "hub-a: +0 -0 (skipped 0) at 2"]
    with hubs.b.session() as s:
        assert s.scalar(select(func.count()).select_from(Signal).where(Signal.collection_id == other)) == 0
        bad = service.get(s, "hub-a-wrong-pin")
        assert bad.last_error is not None and "key" in bad.last_error
    assert "hub-a-wrong-pin: " in hubs.b.app.test_client().get("/readyz").get_json()["checks"]["upstreams"]


def test_the_operator_adds_lists_shows_and_disables_upstreams_with_the_cli(hubs, tmp_path):
    env = {"HASHFED_VAR_DIR": str(hubs.b.settings.var_dir), "HASHFED_DATABASE_URL": hubs.b.settings.database_url,
           "HASHFED_HUB_NAME": HUB_NAME}
    secret = tmp_path / "secret"
    secret.write_text(hubs.a.secret + "\n")
    runner = CliRunner()
    made = runner.invoke(main, ["upstreams", "add", "hub-a-cli", "--kind", "hashfed", "--url", hubs.a_url,
                                "--collection", "ncii-b", "--upstream-collection", hubs.ca, "--client-id",
                                hubs.a.client_id, "--client-secret-file", str(secret), "--keyset-sha256",
                                hubs.a.pin, "--json"], env=env)
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["name"] == "hub-a-cli"
    listed = runner.invoke(main, ["upstreams", "list"], env=env)
    assert listed.exit_code == 0 and "hub-a-cli\thashfed" in listed.output
    shown = runner.invoke(main, ["upstreams", "show", "hub-a-cli", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert hubs.a.secret not in shown.output and json.loads(shown.output)["credentials"] == "set (encrypted)"
    with hubs.b.session() as s:
        stored = service.get(s, "hub-a-cli")
        assert hubs.a.secret.encode() not in bytes(stored.credentials)
        assert service.credentials_of(stored, hubs.b.keys(s).hub_secret) == {"client_secret": hubs.a.secret}
        text = b"".join(bytes(e.entry) for e in s.scalars(select(AuditEntry)))
        assert b'"upstream.add"' in text and hubs.a.secret.encode() not in text
    missing = runner.invoke(main, ["upstreams", "add", "x", "--kind", "hashfed", "--url", hubs.a_url,
                                   "--collection", "ncii-b"], env=env)
    assert missing.exit_code != 0 and "client_secret" in missing.output
    assert runner.invoke(main, ["upstreams", "disable", "hub-a-cli"], env=env).exit_code == 0
    assert "hub-a-cli\thashfed\t" in runner.invoke(main, ["upstreams", "list"], env=env).output
    assert "disabled" in runner.invoke(main, ["upstreams", "list"], env=env).output
    assert runner.invoke(main, ["upstreams", "remove", "hub-a-cli"], env=env).exit_code == 0
    assert "hub-a-cli" not in runner.invoke(main, ["upstreams", "list"], env=env).output


def test_a_mass_removal_upstream_is_held_until_the_operator_confirms_it(hubs):
    env = {"HASHFED_VAR_DIR": str(hubs.b.settings.var_dir), "HASHFED_DATABASE_URL": hubs.b.settings.database_url,
           "HASHFED_HUB_NAME": HUB_NAME}
    runner = CliRunner()
    pulled = runner.invoke(main, ["upstreams", "pull"], env=env)
    assert pulled.exit_code == 0 and "hub-a: +25 -0 (skipped 0) at 1" in pulled.output, pulled.output
    hubs.a.retract(hubs.ca, 3)  # 3 of 25: more than the kit's 5%
    hubs.a.seal(hubs.ca)
    assert hubs.pull() == ["hub-a: failed"]
    assert len(hubs.b_values()) == 25
    with hubs.b.session() as s:
        assert "hashfed upstreams confirm hub-a" in str(service.get(s, "hub-a").last_error)
    confirmed = runner.invoke(main, ["upstreams", "confirm", "hub-a"], env=env)
    assert confirmed.exit_code == 0 and "batch 2" in confirmed.output, confirmed.output
    assert hubs.pull() == ["hub-a: +0 -3 (skipped 0) at 2"]
    assert len(hubs.b_values()) == 22
    removed = runner.invoke(main, ["upstreams", "remove", "hub-a"], env=env)
    assert removed.exit_code == 0, removed.output
    assert not list((hubs.b.settings.var_dir / "upstreams").iterdir())  # its mirror is gone with it


def test_a_mirror_lost_between_pulls_still_passes_on_the_removals_it_never_saw(hubs):
    """The scheduler's host lost the upstream's mirror: the next pull starts from A's snapshot, where a hash
    retired meanwhile is simply absent. B compares A's whole set with what it fed and removes that hash."""
    assert hubs.pull() == ["hub-a: +25 -0 (skipped 0) at 1"]
    retired_id = hubs.a.ids[hubs.ca][5]
    with hubs.a.session() as s:
        retired = s.get(Signal, retired_id).value
        signals.retire(s, collection_id=hubs.ca, signal_id=retired_id, actor=Actor.operator())
    hubs.a.seal(hubs.ca)
    with hubs.b.session() as s:
        upstream = service.get(s, "hub-a")
        pull.mirror_path(hubs.b.settings.var_dir, upstream).unlink()
    assert hubs.pull() == ["hub-a: +0 -1 (skipped 24) at 2"]
    assert hubs.b_values() == {pdq(i) for i in range(25)} - {retired}
    hubs.b.seal(hubs.cb)
    assert hubs.kit_sync("kit") == {pdq(i) for i in range(25)} - {retired}
