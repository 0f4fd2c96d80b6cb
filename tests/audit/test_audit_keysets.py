"""DSSE envelopes, key set rotation and role-bound verification of typed payloads."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

import pytest

from audit.canonical import canonical_json, format_time, parse_time
from audit.dsse import Envelope, pae, sign_envelope, verify_envelope
from audit.errors import (
    ExpiredError,
    FormatError,
    KeySetError,
    PayloadTypeError,
    RevokedKeyError,
    RoleError,
    RotationError,
    ThresholdError,
    VerificationError,
)
from audit.keyset import TrustedKeySet, walk_keysets
from audit.merkle import CompactRange, leaf_hash
from audit.payloads import BatchPayload, CollectionDescriptor, Snapshot, SnapshotChunk, open_payload
from tests.audit.audit_testkit import NOW, keyset_dict, seeded, signed_keyset

R1, R2, R3, R4 = seeded(1), seeded(2), seeded(3), seeded(4)
BATCH, COLL, BATCH2 = seeded(10), seeded(11), seeded(12)
ROLE_KEYS = {"batch": (BATCH, ["batch"]), "coll": (COLL, ["collection"]), "batch2": (BATCH2, ["batch"])}


def test_pae_matches_the_dsse_spec() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_envelope_threshold_counts_each_key_once() -> None:
    env = sign_envelope("t", b"{}", [R1, R1, R2])
    keys = {R1.key_id: R1.public_key, R2.key_id: R2.public_key, R3.key_id: R3.public_key}
    assert verify_envelope(env, "t", keys, 2) == b"{}"
    with pytest.raises(ThresholdError):
        verify_envelope(env, "t", keys, 3)
    twice = sign_envelope("t", b"{}", [R1, R1])
    with pytest.raises(ThresholdError):
        verify_envelope(twice, "t", keys, 2)
    with pytest.raises(PayloadTypeError):
        verify_envelope(env, "u", keys, 1)
    tampered = Envelope("t", b"{ }", env.signatures)
    with pytest.raises(ThresholdError):
        verify_envelope(tampered, "t", keys, 1)
    assert Envelope.from_json(env.to_json()) == env


def v1(**kw: object) -> bytes:
    return signed_keyset(keyset_dict(1, [R1, R2], ROLE_KEYS, threshold=2), [R1, R2])


def pin() -> str:
    return hashlib.sha256(Envelope.from_json(v1()).payload).hexdigest()


def _good() -> list[bytes]:
    return [v1(), signed_keyset(keyset_dict(2, [R3, R4], ROLE_KEYS, threshold=2), [R1, R2, R3, R4])]


ROTATIONS: list[tuple[Callable[[], list[bytes]], type[VerificationError] | None]] = [
    (_good, None),
    (
        lambda: [v1(), signed_keyset(keyset_dict(2, [R3, R4], ROLE_KEYS, threshold=2), [R1, R2])],
        ThresholdError,
    ),
    (
        lambda: [v1(), signed_keyset(keyset_dict(2, [R3, R4], ROLE_KEYS, threshold=2), [R3, R4])],
        RotationError,
    ),
    (
        lambda: [v1(), signed_keyset(keyset_dict(3, [R3, R4], ROLE_KEYS, threshold=2), [R1, R2, R3, R4])],
        RotationError,
    ),
    (
        lambda: [
            v1(),
            signed_keyset(
                keyset_dict(2, [R3, R4], ROLE_KEYS, threshold=2, expires=NOW - timedelta(1)), [R1, R2, R3, R4]
            ),
        ],
        ExpiredError,
    ),
    (
        lambda: [
            v1(),
            signed_keyset(
                keyset_dict(2, [R3, R4], ROLE_KEYS, threshold=2, expires=NOW + timedelta(400)),
                [R1, R2, R3, R4],
            ),
        ],
        KeySetError,
    ),
    (
        lambda: [v1(), signed_keyset(keyset_dict(2, [R3, R4], ROLE_KEYS, threshold=2), [R1, R1, R3, R4])],
        RotationError,
    ),
    (
        lambda: [v1(), signed_keyset(keyset_dict(2, [R3, R4], ROLE_KEYS, threshold=2), [R1, BATCH, R3, R4])],
        RoleError,
    ),
    (lambda: [signed_keyset(keyset_dict(1, [R1, R2], ROLE_KEYS, threshold=2), [R1])], ThresholdError),
]


@pytest.mark.parametrize(
    ("build", "error"),
    ROTATIONS,
    ids=[
        "good rotation",
        "old root only",
        "new root only",
        "skipped version",
        "expired",
        "expires more than a year ahead",
        "same old root key counted twice",
        "batch key signing a key set",
        "pinned version under its root threshold",
    ],
)
def test_key_set_rotation(build: Callable[[], list[bytes]], error: type[VerificationError] | None) -> None:
    if error is None:
        trusted = walk_keysets(build(), pin(), NOW)
        assert trusted.keyset.version == 2
        assert not trusted.trusted_on_first_use
    else:
        with pytest.raises(error):
            walk_keysets(build(), pin() if len(build()) > 1 else None, NOW)


def test_pin_mismatch_is_refused() -> None:
    with pytest.raises(KeySetError, match="pin"):
        TrustedKeySet(v1(), "00" * 32)
    assert TrustedKeySet(v1()).trusted_on_first_use


def _batch(seq: int = 1, sealed: str = "2025-05-01T00:00:00Z") -> BatchPayload:
    return BatchPayload.from_dict(
        {
            "collection": "c1",
            "seq": seq,
            "prev": None if seq == 1 else "ab" * 32,
            "sealed_at": sealed,
            "adds": [{"id": "s1", "type": "pdq", "value": "f" * 64, "quality": 90, "audit_seq": 3}],
            "removes": [{"id": "s0", "reason": "retired", "audit_seq": 4}],
        }
    )


def _keyset_with(extra: dict[str, dict[str, str]]) -> TrustedKeySet:
    return TrustedKeySet(signed_keyset(keyset_dict(1, [R1], ROLE_KEYS, extra=extra), [R1]))


BATCH_CASES = [
    ([BATCH], {}, "2025-05-01T00:00:00Z", None),
    ([BATCH, BATCH], {}, "2025-05-01T00:00:00Z", None),
    ([COLL], {}, "2025-05-01T00:00:00Z", RoleError),
    ([R1], {}, "2025-05-01T00:00:00Z", RoleError),
    ([seeded(99)], {}, "2025-05-01T00:00:00Z", ThresholdError),
    ([BATCH], {"batch": {"revoked_at": "2025-04-01T00:00:00Z"}}, "2025-05-01T00:00:00Z", RevokedKeyError),
    ([BATCH], {"batch": {"revoked_at": "2025-05-01T00:00:00Z"}}, "2025-05-01T00:00:00Z", RevokedKeyError),
    ([BATCH], {"batch": {"revoked_at": "2025-05-01T00:00:01Z"}}, "2025-05-01T00:00:00Z", RevokedKeyError),
    ([BATCH], {"batch": {"revoked_at": "2026-05-01T00:00:00Z"}}, "2025-05-01T00:00:00Z", RevokedKeyError),
    ([BATCH], {"batch": {"valid_until": "2025-05-01T00:00:00Z"}}, "2025-05-01T00:00:00Z", ExpiredError),
    ([BATCH], {}, "2024-12-31T23:59:59Z", ExpiredError),
    ([BATCH, BATCH2], {"batch": {"valid_until": "2025-03-01T00:00:00Z"}}, "2025-05-01T00:00:00Z", None),
]


@pytest.mark.parametrize(
    ("signers", "extra", "sealed", "error"),
    BATCH_CASES,
    ids=[
        "batch key",
        "batch key twice",
        "collection key signs a batch",
        "root key signs a batch",
        "unknown key",
        "revoked before sealed_at",
        "revoked at sealed_at",
        "revoked after sealed_at (a thief chooses sealed_at)",
        "revoked a year after sealed_at",
        "valid_until at sealed_at",
        "sealed before valid_from",
        "retired key plus current key",
    ],
)
def test_batch_envelope_roles(signers: list, extra: dict, sealed: str, error: type[Exception] | None) -> None:
    trusted = _keyset_with(extra)
    batch = _batch(sealed=sealed)
    env = sign_envelope(BatchPayload.PAYLOAD_TYPE, batch.to_bytes(), signers)
    if error is None:
        assert open_payload(trusted, env.to_json(), BatchPayload) == batch
    else:
        with pytest.raises(error):
            open_payload(trusted, env, BatchPayload)


def test_payload_type_is_checked_and_bytes_verified_before_parsing() -> None:
    trusted = _keyset_with({})
    env = sign_envelope(BatchPayload.PAYLOAD_TYPE, _batch().to_bytes(), [BATCH])
    with pytest.raises(PayloadTypeError):
        open_payload(trusted, env, CollectionDescriptor, at=NOW)
    garbage = sign_envelope(BatchPayload.PAYLOAD_TYPE, b"not json", [seeded(99)])
    with pytest.raises(ThresholdError):  # refused on signatures, never parsed
        open_payload(trusted, garbage, BatchPayload)
    unknown = sign_envelope("application/x-other", b"{}", [BATCH])
    with pytest.raises(PayloadTypeError):
        trusted.verify(unknown, "application/x-other", NOW)


def test_collection_descriptor_round_trip() -> None:
    trusted = _keyset_with({})
    desc = CollectionDescriptor(
        "c1", "ncii", "ncii", "hub.example.org/collections/c1", ("pdq", "md5"), 31, 50
    )
    env = sign_envelope(CollectionDescriptor.PAYLOAD_TYPE, desc.to_bytes(), [COLL])
    assert open_payload(trusted, env, CollectionDescriptor, at=NOW) == desc
    with pytest.raises(RoleError):
        open_payload(
            trusted, sign_envelope(desc.PAYLOAD_TYPE, desc.to_bytes(), [BATCH]), CollectionDescriptor, NOW
        )


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(seq="1"),
        lambda d: d.update(seq=True),
        lambda d: d.update(prev="ab" * 32),
        lambda d: d.update(sealed_at="2025-05-01T00:00:00+00:00"),
        lambda d: d["adds"][0].update(quality=1.5),
        lambda d: d["adds"][0].update(extra=1),
        lambda d: d.pop("removes"),
        lambda d: d["adds"][0].update(id=7),
    ],
    ids=[
        "seq as string",
        "seq as bool",
        "prev on seq 1",
        "offset time",
        "float quality",
        "unknown field",
        "missing removes",
        "integer id",
    ],
)
def test_batch_rejects_bad_fields(mutate: Callable[[dict], object]) -> None:
    d = _batch().to_dict()
    mutate(d)
    with pytest.raises(FormatError):
        BatchPayload.from_dict(d)


def test_payload_bytes_must_be_canonical() -> None:
    with pytest.raises(FormatError):
        BatchPayload.from_bytes(_batch().to_bytes().replace(b",", b", ", 1))
    with pytest.raises(FormatError):
        canonical_json({"x": 1.0})


def test_snapshot_checks_its_frontier() -> None:
    cr = CompactRange()
    cr.extend(leaf_hash(bytes([i])) for i in range(5))
    snap = Snapshot("c1", 5, cr.root(), cr, "cd" * 32, (SnapshotChunk(0, "ef" * 32, 3),))
    assert Snapshot.from_bytes(snap.to_bytes()) == snap
    d = snap.to_dict()
    d["root"] = d["frontier"]["hashes"][0]
    with pytest.raises(VerificationError):
        Snapshot.from_dict(d)


def test_times() -> None:
    t = parse_time("2025-01-31T12:00:00Z")
    assert format_time(t) == "2025-01-31T12:00:00Z"
    for bad in ("2025-01-31T12:00:00.5Z", "2025-01-31 12:00:00Z", "2025-02-30T12:00:00Z", 5):
        with pytest.raises(FormatError):
            parse_time(bad)
