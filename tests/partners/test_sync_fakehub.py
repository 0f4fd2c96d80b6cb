"""Sync against a hub built from `audit` primitives: the protocol rules, one attack per row."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from audit.merkle import b64encode
from partners.client import errors
from partners.client.mirror import Mirror
from partners.client.sync import Syncer
from partners.client.transport import Response
from partners.client.verify import Policy
from tests.partners.fakehub import HUB, FakeHub, FakeTransport, seeded


@pytest.fixture
def hub() -> FakeHub:
    h = FakeHub()
    h.add_collection("c1")
    h.seal("c1", adds=30)
    h.seal("c1", adds=20)
    return h


def syncer(hub: FakeHub, mirror: Mirror, transport: FakeTransport | None = None, **policy: Any) -> Syncer:
    return Syncer(
        transport or FakeTransport(hub),
        mirror,
        hub.pin,
        Policy(**{"page_limit": 2, **policy}),
        clock=lambda: hub.now,
        only=("c1",),
    )


def values(mirror: Mirror) -> set[str]:
    return {s.value for s in mirror.active_signals()}


def test_first_sync_from_snapshot_then_batches(hub: FakeHub, mirror: Mirror) -> None:
    t = FakeTransport(hub)
    report = syncer(hub, mirror, t).sync()
    assert report.ok, report.errors()
    assert len(values(mirror)) == 50
    assert mirror.heads() == {"c1": 2}
    assert any(p.startswith("GET /v1/collections/c1/snapshot/chunks/0") for p in t.log)
    hub.seal("c1", adds=5, removes=["s1"])
    hub.seal("c1", adds=1)
    hub.seal("c1", adds=1)
    report = syncer(hub, mirror, t).sync()
    assert report.ok, report.errors()
    assert report.results[0].batches == 3
    assert len(values(mirror)) == 56
    assert mirror.heads() == {"c1": 5}
    changes = list(mirror.changes("c1", 2))
    assert [(c.seq, c.op) for c in changes][:2] == [(3, "add"), (3, "add")]
    assert ("remove", "s1") in {(c.op, c.signal_id) for c in changes}
    assert t.acks[-1][1]["size"] == 5


def test_first_sync_without_snapshot_walks_batches(hub: FakeHub, mirror: Mirror) -> None:
    report = syncer(hub, mirror, FakeTransport(hub, snapshots=False)).sync()
    assert report.ok, report.errors()
    assert len(values(mirror)) == 50
    assert [c.op for c in mirror.changes("c1", 0)].count("add") == 50


def test_key_rotation_is_walked_one_version_at_a_time(hub: FakeHub, mirror: Mirror) -> None:
    assert syncer(hub, mirror).sync().ok
    hub.rotate("batch")
    hub.rotate("checkpoint")
    hub.seal("c1", adds=3)
    report = syncer(hub, mirror).sync()
    assert report.ok, report.errors()
    assert len(mirror.keyset_envelopes()) == 3


def test_mass_removal_is_held_until_confirmed(hub: FakeHub, mirror: Mirror) -> None:
    assert syncer(hub, mirror).sync().ok
    hub.seal("c1", adds=1)
    hub.seal("c1", removes=[f"s{i}" for i in range(1, 11)])
    hub.seal("c1", adds=1)
    report = syncer(hub, mirror).sync()
    assert isinstance(report.errors()[0], errors.HeldBatchError)
    assert mirror.heads() == {"c1": 3}  # the batch before the held one is applied
    held = mirror.held("c1")
    assert held is not None and held.seq == 4 and held.removes == 10
    again = syncer(hub, mirror).sync()
    assert isinstance(again.errors()[0], errors.HeldBatchError)
    mirror.confirm("c1")
    report = syncer(hub, mirror).sync()
    assert report.ok, report.errors()
    assert mirror.heads() == {"c1": 5}
    assert len(values(mirror)) == 42
    assert mirror.held("c1") is None


def test_interrupted_sync_resumes_without_loss_or_duplication(hub: FakeHub, mirror: Mirror) -> None:
    assert syncer(hub, mirror).sync().ok
    for _ in range(6):
        hub.seal("c1", adds=2)
    t = FakeTransport(hub)
    calls = {"n": 0}

    def drop_third_page(method: str, path: str, params: Any, body: Any) -> Response | None:
        if path.endswith("/batches"):
            calls["n"] += 1
            if calls["n"] == 3:
                raise errors.TransportError("connection reset")
        return None

    t.override = drop_third_page
    report = syncer(hub, mirror, t).sync()
    assert isinstance(report.errors()[0], errors.TransportError)
    assert mirror.heads() == {"c1": 6}  # two pages of two batches committed
    t.override = None
    assert syncer(hub, mirror, t).sync().ok
    assert mirror.heads() == {"c1": 8}
    assert len(values(mirror)) == 62
    assert len(list(mirror.changes("c1", 0))) == 62


def test_snapshot_behind_the_checkpoint_is_proven_by_the_next_page(hub: FakeHub, mirror: Mirror) -> None:
    old_snapshot = hub.snapshot("c1")  # at seq 2
    hub.seal("c1", adds=3)
    hub.seal("c1", adds=3)
    t = FakeTransport(hub)
    hub.snapshot = lambda cid: old_snapshot  # type: ignore[method-assign]
    report = syncer(hub, mirror, t).sync()
    assert report.ok, report.errors()
    assert report.results[0].snapshot_signals == 50 and mirror.heads() == {"c1": 4}
    assert len(values(mirror)) == 56


def test_forked_snapshot_is_refused_before_anything_is_stored(hub: FakeHub, mirror: Mirror) -> None:
    real = hub.collections["c1"]
    other = FakeHub()
    other.add_collection("c1")
    other.seal("c1", adds=30)
    other.seal("c1", adds=21)  # another history at seq 2, signed with the same keys
    forked_snapshot = other.snapshot("c1")
    hub.seal("c1", adds=1)
    hub.snapshot = lambda cid: forked_snapshot  # type: ignore[method-assign]
    before = mirror.dump()
    report = syncer(hub, mirror).sync()
    assert isinstance(report.errors()[0], errors.BatchOrderError | errors.ForkError), report.errors()
    assert mirror.dump() == before and len(real.payloads) == 3


# Attacks: each served by a transport in the middle; each refused, the mirror unchanged --------------------

Attack = Callable[[FakeHub, FakeTransport], None]


def _page(hub: FakeHub, edit: Callable[[dict[str, Any]], None]) -> Callable[..., Response | None]:
    def handler(method: str, path: str, params: Any, body: Any) -> Response | None:
        if not path.endswith("/batches"):
            return None
        data = json.loads(FakeTransport(hub).serve(method, path, params, body).body)
        edit(data)
        return Response(200, json.dumps(data).encode(), {})

    return handler


def _tamper(hub: FakeHub, t: FakeTransport) -> None:
    def edit(data: dict[str, Any]) -> None:
        env = data["batches"][0]
        payload = json.loads(__import__("base64").b64decode(env["payload"]))
        payload["adds"][0]["value"] = "f" * 64
        env["payload"] = b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())

    t.override = _page(hub, edit)


def _wrong_key(hub: FakeHub, t: FakeTransport) -> None:
    hub.collections["c1"].payloads.pop()
    hub.collections["c1"].envelopes.pop()
    hub.seal("c1", adds=2, signer=seeded(99))


def _revoked_key(hub: FakeHub, t: FakeTransport) -> None:
    hub.collections["c1"].payloads.pop()
    hub.collections["c1"].envelopes.pop()
    old = hub.signers["batch"]
    hub.rotate("batch", revoke_at=hub.now - timedelta(days=2))
    hub.seal("c1", adds=2, signer=old)  # sealed after the old key's revocation


def _skipped_seq(hub: FakeHub, t: FakeTransport) -> None:
    t.override = _page(hub, lambda d: d["batches"].pop(0))


def _wrong_collection(hub: FakeHub, t: FakeTransport) -> None:
    hub.add_collection("c2")
    hub.seal("c2", adds=1)
    hub.seal("c2", adds=1)
    hub.seal("c2", adds=1)
    stolen = json.loads(hub.collections["c2"].envelopes[2])
    t.override = _page(hub, lambda d: d["batches"].__setitem__(0, stolen))


def _old_checkpoint(hub: FakeHub, t: FakeTransport) -> None:
    old = hub.checkpoint("c1", 2, cosigned_at=hub.now - timedelta(hours=2))

    def handler(method: str, path: str, params: Any, body: Any) -> Response | None:
        if path.endswith("/checkpoint"):
            return Response(200, old.encode(), {})
        return None

    t.override = handler


def _stale_cosignature(hub: FakeHub, t: FakeTransport) -> None:
    stale = hub.checkpoint("c1", cosigned_at=hub.now - timedelta(days=3))
    t.override = lambda m, p, q, b: Response(200, stale.encode(), {}) if p.endswith("/checkpoint") else None


def _forked_checkpoint(hub: FakeHub, t: FakeTransport) -> None:
    forked = hub.checkpoint("c1", 2, root=b"\x07" * 32)
    t.override = lambda m, p, q, b: Response(200, forked.encode(), {}) if p.endswith("/checkpoint") else None


def _inconsistent_log(hub: FakeHub, t: FakeTransport) -> None:
    col = hub.collections["c1"]  # rewrite history: batch 2 replaced, batches re-sealed on top
    col.payloads[:] = col.payloads[:1]
    col.envelopes[:] = col.envelopes[:1]
    hub.seal("c1", adds=1)
    hub.seal("c1", adds=1)
    hub.seal("c1", adds=1)


def _bad_proof(hub: FakeHub, t: FakeTransport) -> None:
    t.override = _page(hub, lambda d: d.__setitem__("proof", [b64encode(b"\x01" * 32)] * 2))


def _keyset_rolled_back(hub: FakeHub, t: FakeTransport) -> None:
    first = hub.keysets[0]
    hub.rotate("collection")
    t.override = lambda m, p, q, b: Response(200, first, {}) if p == "/v1/keys" else None


def _oversized(hub: FakeHub, t: FakeTransport) -> None:
    t.override = _page(hub, lambda d: d.__setitem__("padding", "x" * (70 << 20)))


def _future_cosignature(hub: FakeHub, t: FakeTransport) -> None:
    future = hub.checkpoint("c1", cosigned_at=hub.now + timedelta(hours=1))
    t.override = lambda m, p, q, b: Response(200, future.encode(), {}) if p.endswith("/checkpoint") else None


def _wrong_origin(hub: FakeHub, t: FakeTransport) -> None:
    other = hub.checkpoint("c1", origin=f"{HUB}/collections/c9")
    t.override = lambda m, p, q, b: Response(200, other.encode(), {}) if p.endswith("/checkpoint") else None


def _bad_prev(hub: FakeHub, t: FakeTransport) -> None:
    hub.collections["c1"].payloads.pop()
    hub.collections["c1"].envelopes.pop()
    hub.seal("c1", adds=2, prev="0" * 64)


ATTACKS: list[tuple[Attack, type[errors.PartnerError]]] = [
    (_tamper, errors.EnvelopeError),
    (_wrong_key, errors.EnvelopeError),
    (_revoked_key, errors.EnvelopeError),
    (_skipped_seq, errors.BatchOrderError),
    (_wrong_collection, errors.BatchOrderError),
    (_bad_prev, errors.BatchOrderError),
    (_old_checkpoint, errors.FreshnessError),
    (_stale_cosignature, errors.FreshnessError),
    (_future_cosignature, errors.FreshnessError),
    (_wrong_origin, errors.CheckpointSignatureError),
    (_forked_checkpoint, errors.ForkError),
    (_inconsistent_log, errors.BatchOrderError),
    (_bad_proof, errors.ConsistencyProofError),
    (_keyset_rolled_back, errors.KeySetRefusedError),
    (_oversized, errors.ResponseTooLargeError),
]
IDS = [
    "tampered envelope",
    "wrong key",
    "revoked key",
    "skipped seq",
    "wrong collection",
    "broken prev chain",
    "replayed old checkpoint",
    "stale cosignature",
    "cosignature in the future",
    "checkpoint of another origin",
    "forked checkpoint",
    "history rewritten (prev chain breaks)",
    "consistency proof fails",
    "key set rolled back",
    "oversized response",
]


@pytest.mark.parametrize(("attack", "expected"), ATTACKS, ids=IDS)
def test_attack_is_refused_and_mirror_unchanged(
    hub: FakeHub, mirror: Mirror, attack: Attack, expected: type[errors.PartnerError]
) -> None:
    t = FakeTransport(hub)
    assert syncer(hub, mirror, t).sync().ok
    hub.now += timedelta(hours=1)
    hub.seal("c1", adds=2)
    hub.seal("c1", adds=2)
    if attack is _revoked_key:
        hub.rotate("checkpoint")  # a fresh key set version the kit must walk to
    before = mirror.dump()
    attack(hub, t)
    report = syncer(hub, mirror, t).sync()
    assert not report.ok
    error = report.errors()[0]
    assert isinstance(error, expected), repr(error)
    assert mirror.dump() == before
    status = {s.collection: s for s in mirror.status()}
    assert status["c1"].last_error and error.check in status["c1"].last_error
    if expected is errors.ForkError:
        alert = mirror.open_alerts("c1")[0]
        assert alert["kept_note"] and alert["kind"] == "fork"
        assert isinstance(syncer(hub, mirror, FakeTransport(hub)).sync().errors()[0], errors.HaltedError)


# A failing consistency proof is a failed verification, retried; a signed second root is a fork ------------


def _flaky_proof(hub: FakeHub, failures: int) -> tuple[FakeTransport, dict[str, int]]:
    """A transport whose first `failures` pages carry a broken consistency proof."""
    t = FakeTransport(hub)
    served = {"broken": 0}
    broken = _page(hub, lambda d: d.__setitem__("proof", [b64encode(b"\x01" * 32)] * 2))

    def handler(method: str, path: str, params: Any, body: Any) -> Response | None:
        if path.endswith("/batches") and served["broken"] < failures:
            served["broken"] += 1
            return broken(method, path, params, body)
        return None

    t.override = handler
    return t, served


@pytest.mark.parametrize(
    ("failures", "synced"),
    [(1, True), (2, True), (3, False), (10, False)],
    ids=["one broken proof, retried", "two broken proofs, retried", "three in a row", "always broken"],
)
def test_failing_consistency_proof_is_a_failed_verification_not_a_fork(
    hub: FakeHub, mirror: Mirror, failures: int, synced: bool
) -> None:
    assert syncer(hub, mirror).sync().ok
    hub.now += timedelta(hours=1)
    hub.seal("c1", adds=2)
    before = mirror.dump()
    t, served = _flaky_proof(hub, failures)
    report = syncer(hub, mirror, t).sync()
    assert mirror.open_alerts("c1") == []  # nothing kept as fork evidence
    if synced:
        assert report.ok, report.errors()
        assert mirror.heads() == {"c1": 3} and served["broken"] == failures
        return
    error = report.errors()[0]
    assert isinstance(error, errors.ConsistencyProofError) and not isinstance(error, errors.ForkError)
    assert error.check == "consistency-proof" and "fork" not in str(error).lower()
    assert served["broken"] == 3  # the page was asked for again PROOF_RETRIES times
    assert mirror.dump() == before
    status = {s.collection: s for s in mirror.status()}
    assert status["c1"].last_error and status["c1"].last_error.startswith("consistency-proof:")
    assert "fork" not in status["c1"].last_error.lower()
    again = syncer(hub, mirror).sync()  # not halted: the next honest answer applies
    assert again.ok, again.errors()
    assert mirror.heads() == {"c1": 3}


def test_two_signed_roots_at_one_size_remain_a_fork_kept_as_evidence(hub: FakeHub, mirror: Mirror) -> None:
    assert syncer(hub, mirror).sync().ok
    kept = mirror.dump()
    t = FakeTransport(hub)
    forked = hub.checkpoint("c1", 2, root=b"\x07" * 32)  # validly signed, same size, another root
    t.override = lambda m, p, q, b: Response(200, forked.encode(), {}) if p.endswith("/checkpoint") else None
    report = syncer(hub, mirror, t).sync()
    error = report.errors()[0]
    assert isinstance(error, errors.ForkError) and error.check == "fork"
    alert = mirror.open_alerts("c1")[0]
    assert alert["kind"] == "fork" and alert["served_note"] == forked and alert["kept_note"]
    assert mirror.dump() == kept
    assert isinstance(syncer(hub, mirror).sync().errors()[0], errors.HaltedError)
