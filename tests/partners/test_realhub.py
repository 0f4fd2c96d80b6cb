"""The kit against the real hub: what the hub's services seal verifies; then sync through its HTTP feed."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from audit.dsse import Envelope
from audit.keyset import TrustedKeySet
from audit.merkle import b64encode
from hub.feed import batches, collections
from partners.client import errors
from partners.client.mirror import Mirror
from partners.client.sync import Syncer
from partners.client.transport import Response, Transport
from partners.client.verify import (
    CollectionState,
    Policy,
    expected_origin,
    verify_checkpoint,
    verify_page,
)
from tests.conftest import Database
from tests.partners.realhub import HUB_NAME, FlaskTransport, RealHub


@pytest.fixture
def hub(fresh_database: Database, tmp_path: Path) -> RealHub:
    return RealHub.start(fresh_database.app_url, fresh_database.engine, tmp_path / "var")


def test_kit_verifies_what_the_hub_seals(hub: RealHub) -> None:
    cid = hub.create_collection("ncii-main")
    hub.submit(cid, 120)
    hub.seal(cid, max_entries=50)
    now = datetime.now(UTC)
    with hub.session() as s:
        trusted = TrustedKeySet(hub.latest_keyset(), hub.pin)
        desc = collections.get(s, cid)
        assert desc is not None
        head = batches.head(s, cid)
        assert head is not None and head.size == 3
        envs = [json.loads(e) for e in batches.envelopes(s, cid, 1, 3)]
    policy = Policy()
    cp = verify_checkpoint(trusted, head.note, expected_origin(HUB_NAME, cid), None, now, policy)
    page = verify_page(trusted, CollectionState.empty(cid), cp, envs, [], policy)
    assert sum(len(b.payload.adds) for b in page.batches) == 120
    assert page.state_after().frontier.root() == cp.root


needs_feed = pytest.mark.skipif(
    importlib.util.find_spec("hub.feed.routes") is None, reason="the hub's feed routes have not landed yet"
)


def syncer(hub: RealHub, mirror: Mirror, transport: Transport | None = None, **kw: Any) -> Syncer:
    return Syncer(transport or FlaskTransport(hub), mirror, hub.pin, Policy(page_limit=2, **kw))


@needs_feed
def test_initial_incremental_and_removal(hub: RealHub, mirror: Mirror) -> None:
    cid = hub.create_collection("ncii-main")
    hub.submit(cid, 100)
    hub.seal(cid, max_entries=40)
    t = FlaskTransport(hub)
    report = syncer(hub, mirror, t).sync()
    assert report.ok, report.errors()
    assert len(list(mirror.active_signals(cid))) == 100
    hub.submit(cid, 10)
    hub.retract(cid, 3)
    hub.seal(cid, max_entries=5)
    report = syncer(hub, mirror, t).sync()
    assert report.ok, report.errors()
    assert mirror.heads()[cid] >= 4
    active = {s.signal_id for s in mirror.active_signals(cid)}
    assert len(active) == 107 and active == set(hub.ids[cid])


@needs_feed
def test_mass_removal_held_until_confirmed(hub: RealHub, mirror: Mirror) -> None:
    cid = hub.create_collection("ncii-main")
    hub.submit(cid, 50)
    hub.seal(cid)
    assert syncer(hub, mirror).sync().ok
    hub.retract(cid, 10)
    hub.seal(cid)
    report = syncer(hub, mirror).sync()
    assert isinstance(report.errors()[0], errors.HeldBatchError)
    assert len(list(mirror.active_signals(cid))) == 50
    mirror.confirm(cid)
    assert syncer(hub, mirror).sync().ok
    assert len(list(mirror.active_signals(cid))) == 40


@needs_feed
def test_interrupted_sync_resumes(hub: RealHub, mirror: Mirror) -> None:
    cid = hub.create_collection("ncii-main")
    hub.submit(cid, 10)
    hub.seal(cid)
    assert syncer(hub, mirror).sync().ok
    hub.submit(cid, 60)
    hub.seal(cid, max_entries=10)
    real = FlaskTransport(hub)
    pages = {"n": 0}

    class Flaky(Transport):
        def request(self, method: str, path: str, **kw: Any) -> Response:
            if path.endswith("/batches"):
                pages["n"] += 1
                if pages["n"] == 2:
                    raise errors.TransportError("connection dropped")
            return real.request(method, path, **kw)

    assert not syncer(hub, mirror, Flaky()).sync().ok
    assert mirror.heads()[cid] == 3
    assert syncer(hub, mirror, real).sync().ok
    assert mirror.heads()[cid] == 7
    assert len(list(mirror.active_signals(cid))) == 70
    assert len(list(mirror.changes(cid, 0))) == 70


# Attacks served by a transport wrapping the real hub -------------------------------------------------------

Edit = Callable[[RealHub, str, str, Response], Response]


class MITM(Transport):
    """Forwards to the real hub and lets an attack rewrite responses."""

    def __init__(self, hub: RealHub, edit: Edit, cid: str) -> None:
        self.real = FlaskTransport(hub)
        self.hub, self.edit, self.cid = hub, edit, cid

    def request(self, method: str, path: str, **kw: Any) -> Response:
        r = self.real.request(method, path, **{**kw, "max_bytes": 1 << 30})
        r = self.edit(self.hub, self.cid, path, r)
        if len(r.body) > kw["max_bytes"]:
            raise errors.ResponseTooLargeError(path)
        return r


def _on_page(fn: Callable[[dict[str, Any]], None]) -> Edit:
    def edit(hub: RealHub, cid: str, path: str, r: Response) -> Response:
        if not path.endswith("/batches"):
            return r
        data = json.loads(r.body)
        fn(data)
        return Response(r.status, json.dumps(data).encode(), r.headers)

    return edit


def _envs(data: dict[str, Any]) -> list[Any]:
    return data["batches"]


def _tampered(data: dict[str, Any]) -> None:
    env = Envelope.from_dict(_envs(data)[0])
    payload = env.payload.replace(b'"quality":90', b'"quality":91', 1)
    _envs(data)[0]["payload"] = b64encode(payload)


def _wrong_key(data: dict[str, Any]) -> None:
    from audit.dsse import sign_envelope
    from audit.signing import Ed25519Signer

    env = Envelope.from_dict(_envs(data)[0])
    _envs(data)[0] = sign_envelope(env.payload_type, env.payload, [Ed25519Signer.generate()]).to_dict()


def _skipped(data: dict[str, Any]) -> None:
    _envs(data).pop(0)


def _checkpoint_edit(fn: Callable[[RealHub, str, bytes], bytes]) -> Edit:
    def edit(hub: RealHub, cid: str, path: str, r: Response) -> Response:
        if path.endswith("/checkpoint"):
            return Response(r.status, fn(hub, cid, r.body), r.headers)
        if path.endswith("/batches"):
            data = json.loads(r.body)
            data["checkpoint"] = fn(hub, cid, data["checkpoint"].encode()).decode()
            return Response(r.status, json.dumps(data).encode(), r.headers)
        return r

    return edit


def _resign(hub: RealHub, cid: str, size: int, root: bytes, t: datetime) -> bytes:
    from audit.note import Checkpoint, cosign_note, sign_checkpoint

    with hub.session() as s:
        signers = hub.signers(s)
    note = sign_checkpoint(Checkpoint(expected_origin(HUB_NAME, cid), size, root), signers.checkpoint)
    return cosign_note(note, f"{HUB_NAME}/timestamp", signers.timestamp, int(t.timestamp())).encode()


def _forked(hub: RealHub, cid: str, body: bytes) -> bytes:
    return _resign(hub, cid, 1, b"\x05" * 32, datetime.now(UTC))


def _stale(hub: RealHub, cid: str, body: bytes) -> bytes:
    with hub.session() as s:
        head = batches.head(s, cid)
        assert head is not None
        size, root = head.size, bytes(head.root)
    return _resign(hub, cid, size, root, datetime.now(UTC) - timedelta(days=3))


def _replayed(hub: RealHub, cid: str, body: bytes) -> bytes:
    with hub.session() as s:
        root = batches.root_at(s, cid, 1)
    return _resign(hub, cid, 1, root, datetime.now(UTC) - timedelta(hours=1))


def _keyset_rollback(hub: RealHub, cid: str, path: str, r: Response) -> Response:
    if path == "/v1/keys":
        return FlaskTransport(hub).request("GET", "/v1/keys/1", max_bytes=1 << 20)
    return r


def _oversized(hub: RealHub, cid: str, path: str, r: Response) -> Response:
    return Response(r.status, r.body + b" " * (65 << 20), r.headers) if path.endswith("/batches") else r


ATTACKS: list[tuple[Edit, type[errors.PartnerError]]] = [
    (_on_page(_tampered), errors.EnvelopeError),
    (_on_page(_wrong_key), errors.EnvelopeError),
    (_on_page(_skipped), errors.BatchOrderError),
    (_checkpoint_edit(_replayed), errors.FreshnessError),
    (_checkpoint_edit(_stale), errors.FreshnessError),
    (_checkpoint_edit(_forked), errors.ForkError),
    (_keyset_rollback, errors.KeySetRefusedError),
    (_oversized, errors.ResponseTooLargeError),
]
IDS = [
    "tampered envelope",
    "wrong key",
    "skipped seq",
    "replayed old checkpoint",
    "stale cosignature",
    "forked checkpoint",
    "key set rolled back",
    "oversized response",
]


@needs_feed
@pytest.mark.parametrize(("edit", "expected"), ATTACKS, ids=IDS)
def test_attack_on_the_real_hub_is_refused(
    hub: RealHub, mirror: Mirror, edit: Edit, expected: type[errors.PartnerError]
) -> None:
    cid = hub.create_collection("ncii-main")
    hub.submit(cid, 20)
    hub.seal(cid)
    assert syncer(hub, mirror).sync().ok
    hub.submit(cid, 4)
    hub.seal(cid, max_entries=2)
    if edit is _keyset_rollback:
        hub.publish_keyset()  # v2: the kit walks to it, then the attacker serves v1 as the latest
    before = mirror.dump()
    report = syncer(hub, mirror, MITM(hub, edit, cid)).sync()
    assert not report.ok
    assert isinstance(report.errors()[0], expected), repr(report.errors()[0])
    assert mirror.dump() == before
