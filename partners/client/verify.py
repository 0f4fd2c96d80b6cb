"""The kit's pure, ordered verifier: bytes and trusted state in, new trusted state or a specific error out.

No database and no HTTP here (as python-tuf's `TrustedMetadataSet`). The checks run in the order the sync
protocol gives them (docs/partner-kit.md):

1. key set: the pinned version, then each later version one at a time (rotation rule), unexpired, never
   older than the one held (`open_keysets`, `advance_keyset`, `check_latest_keyset`);
2. collection descriptor signed by a `collection` key, naming the collection and its origin;
3. checkpoint: signed by a `checkpoint` key under the origin the kit computes, cosigned by a `timestamp` key
   recently enough (freshness, and never older than the kept cosignature: the freeze attack), not smaller
   than the kept checkpoint (rollback) nor another root at the same size (fork);
4. each batch envelope: signed by a `batch` key valid at its `sealed_at`, checked over the exact bytes before
   they are parsed; then its collection, seq = last + 1 and `prev`;
5. the page's leaves extend the kept frontier, and the consistency proof leads to the checkpoint root. A
   proof that fails is a failed verification (`ConsistencyProofError`), not a fork: the proof is unsigned,
   so it shows nothing about what the hub signed. A fork is two signed statements that cannot both hold.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from audit.dsse import Envelope
from audit.errors import FormatError, RootMismatchError, VerificationError
from audit.keyset import KEYS_TYPE, KeySet, TrustedKeySet
from audit.merkle import CompactRange, leaf_hash, verify_consistency
from audit.note import SIG_COSIGNATURE, SIG_ED25519, NoteVerifier, open_checkpoint
from audit.payloads import BatchPayload, CollectionDescriptor, Snapshot, SnapshotChunk, open_payload
from audit.signing import key_id
from partners.client.errors import (
    BatchOrderError,
    CheckpointSignatureError,
    ConsistencyProofError,
    DescriptorError,
    EnvelopeError,
    ForkError,
    FreshnessError,
    KeySetRefusedError,
    MalformedResponseError,
    RollbackError,
    SnapshotError,
)


@dataclass(frozen=True)
class Policy:
    """Limits the kit enforces; none of them comes from the hub."""

    max_age_s: int = 3600  # seconds: a checkpoint's newest cosignature may be at most this old
    skew_s: int = 300  # seconds: how far in the future a cosignature or a batch time may be
    max_removal_share: float = 0.05  # a batch removing more than this share of a collection is held
    page_limit: int = 100  # batches asked for per page; halved while a page is over its byte cap


@dataclass(frozen=True)
class KeptCheckpoint:
    """A verified checkpoint: the note as served, its size, root and newest cosignature time (POSIX s)."""

    note: str
    size: int
    root: bytes
    cosigned_at: int


@dataclass(frozen=True)
class CollectionState:
    """What the kit trusts about one collection: the frontier of its log and the last checkpoint kept."""

    collection: str
    frontier: CompactRange
    prev: str | None  # hex SHA-256 of the last applied payload: the next batch's `prev`
    last_sealed_at: datetime | None  # batch times never go backwards; unknown after a snapshot
    checkpoint: KeptCheckpoint | None

    @property
    def size(self) -> int:
        """The number of batches applied: the last seq."""
        return self.frontier.size

    @classmethod
    def empty(cls, collection: str) -> CollectionState:
        """A collection nothing was applied to yet."""
        return cls(collection, CompactRange(), None, None, None)


@dataclass(frozen=True)
class VerifiedBatch:
    """A batch whose envelope, order and place in the log were verified."""

    payload: BatchPayload
    sha256: str  # hex SHA-256 of the payload bytes
    leaf: bytes


@dataclass(frozen=True)
class VerifiedPage:
    """A page of batches that extends `start` consistently with `checkpoint`."""

    start: CollectionState
    batches: tuple[VerifiedBatch, ...]
    checkpoint: KeptCheckpoint

    def state_after(self, count: int | None = None) -> CollectionState:
        """The trusted state after applying the first `count` batches (all by default)."""
        batches = self.batches if count is None else self.batches[:count]
        frontier = self.start.frontier.copy()
        frontier.extend(b.leaf for b in batches)
        last = batches[-1] if batches else None
        return CollectionState(
            self.start.collection,
            frontier,
            last.sha256 if last else self.start.prev,
            last.payload.sealed_at if last else self.start.last_sealed_at,
            self.checkpoint,
        )


@dataclass(frozen=True, slots=True)
class ChunkSignal:
    """One active signal of a snapshot chunk."""

    id: str
    type: str
    value: str
    quality: int | None = None
    tags: tuple[str, ...] | None = None


def expected_origin(hub: str, collection: str) -> str:
    """The log origin of a collection, computed by the kit (never taken from the hub)."""
    return f"{hub}/collections/{collection}"


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def _posix(t: datetime) -> int:
    return int(t.timestamp())


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# 1. Key sets ---------------------------------------------------------------------------------------------


def open_keysets(envelopes: Sequence[bytes], pinned_sha256: str) -> TrustedKeySet:
    """Trust `envelopes[0]` under the pin and walk every later stored version forward, one at a time."""
    if not envelopes:
        raise KeySetRefusedError("no key set to start from")
    try:
        trusted = TrustedKeySet(envelopes[0], pinned_sha256)
        for env in envelopes[1:]:
            trusted.update(env)
    except VerificationError as e:
        raise KeySetRefusedError(f"key set: {e}") from e
    return trusted


def advance_keyset(trusted: TrustedKeySet, envelope: bytes) -> KeySet:
    """Accept exactly the next key set version (threshold of the old root keys and of its own)."""
    try:
        return trusted.update(envelope)
    except VerificationError as e:
        raise KeySetRefusedError(f"key set v{trusted.keyset.version + 1}: {e}") from e


def keyset_version(envelope: bytes) -> int:
    """The version a key set envelope claims (unverified: only to compare with the one held)."""
    try:
        env = Envelope.from_json(envelope)
        if env.payload_type != KEYS_TYPE:
            raise FormatError(f"payload type {env.payload_type!r}")
        return KeySet.from_bytes(env.payload).version
    except VerificationError as e:
        raise KeySetRefusedError(f"key set: {e}") from e


def check_latest_keyset(trusted: TrustedKeySet, latest: bytes, now: datetime) -> None:
    """The hub's current key set must be the one held (after walking forward), and unexpired at `now`."""
    version = keyset_version(latest)
    held = trusted.keyset
    if version < held.version:
        raise KeySetRefusedError(f"the hub serves key set v{version}, older than v{held.version} held: rollback")
    if version > held.version:
        raise KeySetRefusedError(f"the hub serves key set v{version} but v{held.version + 1} was not found")
    if sha256_hex(Envelope.from_json(latest).payload) != held.sha256:
        raise KeySetRefusedError(f"the hub serves another key set v{version} than the one held")
    try:
        trusted.check_expiry(now)
    except VerificationError as e:
        raise KeySetRefusedError(f"key set: {e}") from e


# 2. Collection descriptor --------------------------------------------------------------------------------


def verify_descriptor(trusted: TrustedKeySet, envelope: bytes, collection: str, now: datetime) -> CollectionDescriptor:
    """A descriptor signed by `collection` keys usable now, for this collection and its computed origin."""
    try:
        descriptor = open_payload(trusted, envelope, CollectionDescriptor, now)
    except VerificationError as e:
        raise DescriptorError(f"collection {collection}: descriptor: {e}") from e
    if descriptor.id != collection:
        raise DescriptorError(f"descriptor of {descriptor.id!r} served for collection {collection!r}")
    origin = expected_origin(trusted.keyset.hub, collection)
    if descriptor.origin != origin:
        raise DescriptorError(f"descriptor origin {descriptor.origin!r} is not {origin!r}")
    return descriptor


# 3. Checkpoint -------------------------------------------------------------------------------------------


def cosigner_names(hub: str, origin: str) -> tuple[str, ...]:
    """The key name of the hub's `timestamp` cosignatures: `<hub>/timestamp` (hub/feed/batches.py)."""
    return (f"{hub}/timestamp",)


def verify_checkpoint(
    trusted: TrustedKeySet,
    note: str | bytes,
    origin: str,
    kept: KeptCheckpoint | None,
    now: datetime,
    policy: Policy,
) -> KeptCheckpoint:
    """Signature and origin, then freshness, then rollback and same-size fork, against the kept checkpoint."""
    keyset = trusted.keyset
    text = note.decode("utf-8", "replace") if isinstance(note, bytes) else note
    cosigners = [
        NoteVerifier(name, public, SIG_COSIGNATURE)
        for public in keyset.role_keys("timestamp").values()
        for name in cosigner_names(keyset.hub, origin)
    ]
    try:
        signed = open_checkpoint(note, origin, list(keyset.role_keys("checkpoint").values()), cosigners)
    except VerificationError as e:
        raise CheckpointSignatureError(f"checkpoint of {origin}: {e}") from e

    cosigned = {
        key_id(s.public_key): s.time
        for s in signed.note.signatures
        if s.sig_type == SIG_COSIGNATURE
        and s.time is not None
        and keyset.keys[key_id(s.public_key)].usable_at(_at(s.time))
    }
    if len(cosigned) < keyset.threshold("timestamp"):
        raise FreshnessError(f"checkpoint of {origin} has no cosignature by a timestamp key valid at its time")
    t = max(v for v in cosigned.values() if v is not None)
    signers = {
        key_id(s.public_key)
        for s in signed.note.signatures
        if s.sig_type == SIG_ED25519 and s.name == origin and keyset.keys[key_id(s.public_key)].usable_at(_at(t))
    }
    if len(signers) < keyset.threshold("checkpoint"):
        raise CheckpointSignatureError(
            f"checkpoint of {origin}: no checkpoint key valid at {t} signed it (revoked or expired)"
        )

    now_s = _posix(now)
    if t > now_s + policy.skew_s:
        raise FreshnessError(f"checkpoint of {origin} is cosigned {t - now_s} s in the future")
    if t < now_s - policy.max_age_s:
        raise FreshnessError(f"checkpoint of {origin} was cosigned {now_s - t} s ago, more than {policy.max_age_s} s")
    if kept is not None and t < kept.cosigned_at:
        raise FreshnessError(
            f"checkpoint of {origin} is cosigned at {t}, before the kept one ({kept.cosigned_at}): frozen"
        )

    cp = signed.checkpoint
    if kept is not None:
        if cp.size < kept.size:
            raise RollbackError(f"checkpoint of {origin} has size {cp.size}, smaller than the kept {kept.size}")
        if cp.size == kept.size and cp.root != kept.root:
            raise ForkError(f"checkpoint of {origin} has another root at size {cp.size}", kept.note, text)
    return KeptCheckpoint(text, cp.size, cp.root, t)


# 4, 5. Batches -------------------------------------------------------------------------------------------


def verify_page(
    trusted: TrustedKeySet,
    state: CollectionState,
    checkpoint: KeptCheckpoint,
    envelopes: Sequence[Any],
    proof: Sequence[bytes],
    policy: Policy,
) -> VerifiedPage:
    """Verify a page of batch envelopes (JSON objects) that follows `state` up to `checkpoint`.

    `checkpoint` was verified against `state.checkpoint` by `verify_checkpoint`; `proof` is the consistency
    proof from the page's last size to the checkpoint size.
    """
    c = state.collection
    frontier = state.frontier.copy()
    prev, last_time = state.prev, state.last_sealed_at
    kept = state.checkpoint
    latest = _at(checkpoint.cosigned_at + policy.skew_s)
    if state.size + len(envelopes) > checkpoint.size:
        raise BatchOrderError(f"{c}: the page goes past the checkpoint size {checkpoint.size}")
    if not envelopes and state.size < checkpoint.size:
        raise MalformedResponseError(f"{c}: an empty page below the checkpoint size {checkpoint.size}")
    batches: list[VerifiedBatch] = []
    for raw in envelopes:
        seq = frontier.size + 1
        try:
            env = Envelope.from_dict(raw)
            payload = open_payload(trusted, env, BatchPayload)
        except VerificationError as e:
            raise EnvelopeError(f"{c}: batch {seq}: {e}") from e
        if payload.collection != c:
            raise BatchOrderError(f"{c}: batch {seq} belongs to collection {payload.collection!r}")
        if payload.seq != seq:
            raise BatchOrderError(f"{c}: batch seq {payload.seq} where {seq} was expected")
        if payload.prev != prev:
            raise BatchOrderError(f"{c}: batch {seq} does not chain to batch {seq - 1} (prev)")
        if last_time is not None and payload.sealed_at < last_time:
            raise BatchOrderError(f"{c}: batch {seq} is sealed before batch {seq - 1}")
        if payload.sealed_at > latest:
            raise BatchOrderError(f"{c}: batch {seq} is sealed after its checkpoint was cosigned")
        leaf = leaf_hash(env.payload)
        frontier.append(leaf)
        if kept is not None and frontier.size == kept.size and frontier.root() != kept.root:
            raise ForkError(f"{c}: batches 1..{seq} do not lead to the kept checkpoint's root", kept.note)
        digest = sha256_hex(env.payload)
        batches.append(VerifiedBatch(payload, digest, leaf))
        prev, last_time = digest, payload.sealed_at
    _check_consistency(c, frontier, checkpoint, proof)
    return VerifiedPage(state, tuple(batches), checkpoint)


def _check_consistency(c: str, frontier: CompactRange, cp: KeptCheckpoint, proof: Sequence[bytes]) -> None:
    """RFC 9162 2.1.4.2 from the frontier to the checkpoint; a failure is refused, never kept as evidence."""
    if frontier.size == 0:
        return
    try:
        verify_consistency(frontier.size, cp.size, frontier.root(), cp.root, proof)
    except VerificationError as e:
        raise ConsistencyProofError(
            f"{c}: the consistency proof from size {frontier.size} to checkpoint size {cp.size} "
            f"does not verify: {e}"
        ) from e


def removal_held(page: VerifiedPage, active: int, max_share: float, confirmed_sha256: str | None) -> int | None:
    """Index of the first batch removing more than `max_share` of the active signals, unless confirmed."""
    for i, b in enumerate(page.batches):
        removes = len(b.payload.removes)
        if removes and active and removes > max_share * active and b.sha256 != confirmed_sha256:
            return i
        active += len(b.payload.adds) - removes
    return None


# Snapshot ------------------------------------------------------------------------------------------------


def verify_snapshot(
    trusted: TrustedKeySet,
    envelope: Envelope,
    collection: str,
    checkpoint: KeptCheckpoint,
    now: datetime,
) -> Snapshot:
    """A snapshot signed by a `batch` key whose frontier rebuilds its root; at the checkpoint's size its root
    must be the checkpoint's. Below it, the caller proves S is a prefix with the next page (`verify_page`
    from `state_from_snapshot`) before it stores anything: the hub serves no proof with a snapshot."""
    try:
        snapshot = open_payload(trusted, envelope, Snapshot, now)
    except RootMismatchError as e:
        raise SnapshotError(f"{collection}: snapshot: {e}") from e
    except VerificationError as e:
        raise EnvelopeError(f"{collection}: snapshot: {e}") from e
    if snapshot.collection != collection:
        raise SnapshotError(f"snapshot of {snapshot.collection!r} served for collection {collection!r}")
    if snapshot.seq > checkpoint.size:
        raise SnapshotError(f"{collection}: snapshot at seq {snapshot.seq} is past the checkpoint {checkpoint.size}")
    if snapshot.seq == checkpoint.size:
        _check_consistency(collection, snapshot.frontier, checkpoint, [])
    return snapshot


def verify_chunk(snapshot: Snapshot, index: int, data: bytes, parse: Any) -> list[ChunkSignal]:
    """Check a chunk's bytes against the digest the snapshot signed, then parse it with `parse`."""
    if not 0 <= index < len(snapshot.chunks):
        raise SnapshotError(f"{snapshot.collection}: no chunk {index}")
    chunk: SnapshotChunk = snapshot.chunks[index]
    if sha256_hex(data) != chunk.sha256:
        raise SnapshotError(f"{snapshot.collection}: chunk {index} does not match its signed digest")
    signals: list[ChunkSignal] = parse(data)
    if len(signals) != chunk.count:
        raise SnapshotError(f"{snapshot.collection}: chunk {index} holds {len(signals)} signals, not {chunk.count}")
    return signals


def state_from_snapshot(snapshot: Snapshot, checkpoint: KeptCheckpoint) -> CollectionState:
    """The trusted state once every chunk of `snapshot` was verified and stored."""
    return CollectionState(snapshot.collection, snapshot.frontier.copy(), snapshot.payload_sha256, None, checkpoint)


def with_checkpoint(state: CollectionState, checkpoint: KeptCheckpoint) -> CollectionState:
    """The same log with a newer kept checkpoint (a fresher cosignature, or a larger tree to catch up to)."""
    return replace(state, checkpoint=checkpoint)


def age(checkpoint: KeptCheckpoint, now: datetime) -> timedelta:
    """How long ago the kept checkpoint was cosigned."""
    return now - _at(checkpoint.cosigned_at)
