"""Typed signed payloads: collection descriptors, batches, snapshots, and audit log entries.

Each is a frozen dataclass with strict `from_dict` / `to_dict`; bytes are RFC 8785 canonical JSON.
`open_payload` verifies an envelope over its exact bytes before parsing it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from audit.canonical import canonical_json, format_time, parse_canonical, parse_time
from audit.canonical import fields as _fields
from audit.canonical import int_field as _int
from audit.dsse import Envelope, verified_keyids
from audit.errors import FormatError, PayloadTypeError, RoleError, RootMismatchError, ThresholdError
from audit.keyset import TrustedKeySet, role_for
from audit.merkle import CompactRange, b64decode, b64encode, leaf_hash

_HEX64 = re.compile(r"[0-9a-f]{64}")


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise FormatError(f"{what} must be a non-empty string")
    return value


def _hex64(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise FormatError(f"{what} must be 64 lowercase hex digits")
    return value


def _str_list(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise FormatError(f"{what} must be a list")
    return tuple(_str(v, what) for v in value)


P = TypeVar("P", bound="Payload")


class Payload:
    """Base of signed payloads: canonical bytes in and out."""

    PAYLOAD_TYPE: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls: type[P], data: Any) -> P:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """RFC 8785 canonical bytes: what is signed and hashed."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls: type[P], data: bytes) -> P:
        """Parse canonical bytes strictly."""
        return cls.from_dict(parse_canonical(data))

    def signed_at(self) -> datetime | None:
        """The time the payload claims it was signed, used to pick the keys valid then."""
        return None


@dataclass(frozen=True)
class CollectionDescriptor(Payload):
    """A collection's signed settings; the partner kit takes thresholds only from here.

    `vpdq_percent` (P of the vPDQ rule, 1..100) is absent from descriptors signed before it existed: they
    still verify, and read as P = `DEFAULT_VPDQ_PERCENT`; a descriptor that states it is bound by its signature.
    """

    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.hashfed.collection.v1+json"
    DEFAULT_VPDQ_PERCENT: ClassVar[int] = 80

    id: str
    slug: str
    category: str
    origin: str
    signal_types: tuple[str, ...]
    pdq_threshold: int
    min_quality: int
    vpdq_percent: int | None = None  # None: not stated (an older descriptor); `vpdq_match_percent` gives 80

    def __post_init__(self) -> None:
        if self.vpdq_percent is not None and (type(self.vpdq_percent) is not int or not 1 <= self.vpdq_percent <= 100):
            raise FormatError("vpdq_percent must be an integer from 1 to 100")

    @property
    def vpdq_match_percent(self) -> int:
        """P of the vPDQ rule for this collection: as signed, or 80 when the descriptor does not state it."""
        return self.DEFAULT_VPDQ_PERCENT if self.vpdq_percent is None else self.vpdq_percent

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "slug": self.slug,
            "category": self.category,
            "origin": self.origin,
            "signal_types": list(self.signal_types),
            "pdq_threshold": self.pdq_threshold,
            "min_quality": self.min_quality,
        }
        if self.vpdq_percent is not None:  # absent stays absent: an older descriptor's bytes round-trip
            out["vpdq_percent"] = self.vpdq_percent
        return out

    @classmethod
    def from_dict(cls, data: Any) -> CollectionDescriptor:
        d = _fields(
            data,
            "collection",
            {"id", "slug", "category", "origin", "signal_types", "pdq_threshold", "min_quality"},
            frozenset({"vpdq_percent"}),
        )
        return cls(
            _str(d["id"], "id"),
            _str(d["slug"], "slug"),
            _str(d["category"], "category"),
            _str(d["origin"], "origin"),
            _str_list(d["signal_types"], "signal_types"),
            _int(d["pdq_threshold"], "pdq_threshold"),
            _int(d["min_quality"], "min_quality"),
            _int(d["vpdq_percent"], "vpdq_percent", 1) if "vpdq_percent" in d else None,
        )


@dataclass(frozen=True)
class Provenance:
    """Where an add fed from an upstream came from: the upstream's name at this hub, the upstream's signal id
    (a hashfed upstream) and its position (`seq`: a hashfed upstream's batch seq, a StopNCII upstream's
    `lastModtimestamp`). Optional in a batch entry: a hash contributed here carries none."""

    upstream: str
    signal: str | None = None
    seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"upstream": self.upstream}
        if self.signal is not None:
            out["signal"] = self.signal
        if self.seq is not None:
            out["seq"] = self.seq
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Provenance:
        d = _fields(data, "provenance", {"upstream"}, frozenset({"signal", "seq"}))
        return cls(
            _str(d["upstream"], "provenance upstream"),
            _str(d["signal"], "provenance signal") if "signal" in d else None,
            _int(d["seq"], "provenance seq", 0) if "seq" in d else None,
        )


@dataclass(frozen=True)
class BatchAdd:
    """A signal added by a batch; `audit_seq` is the audit entry that authorized it."""

    id: str
    type: str
    value: str
    audit_seq: int
    quality: int | None = None
    tags: tuple[str, ...] | None = None
    provenance: Provenance | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "value": self.value,
            "audit_seq": self.audit_seq,
        }
        if self.quality is not None:
            out["quality"] = self.quality
        if self.tags is not None:
            out["tags"] = list(self.tags)
        if self.provenance is not None:
            out["provenance"] = self.provenance.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any) -> BatchAdd:
        d = _fields(data, "add", {"id", "type", "value", "audit_seq"}, frozenset({"quality", "tags", "provenance"}))
        return cls(
            _str(d["id"], "add id"),
            _str(d["type"], "add type"),
            _str(d["value"], "add value"),
            _int(d["audit_seq"], "audit_seq"),
            _int(d["quality"], "quality") if "quality" in d else None,
            _str_list(d["tags"], "tags") if "tags" in d else None,
            Provenance.from_dict(d["provenance"]) if "provenance" in d else None,
        )


@dataclass(frozen=True)
class BatchRemove:
    """A signal removed by a batch (no hash value: the mirror knows it from the add)."""

    id: str
    reason: str
    audit_seq: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "reason": self.reason, "audit_seq": self.audit_seq}

    @classmethod
    def from_dict(cls, data: Any) -> BatchRemove:
        d = _fields(data, "remove", {"id", "reason", "audit_seq"})
        return cls(_str(d["id"], "remove id"), _str(d["reason"], "reason"), _int(d["audit_seq"], "audit_seq"))


@dataclass(frozen=True)
class BatchPayload(Payload):
    """One sealed batch of a collection; leaf seq-1 of the collection's log is SHA-256(0x00 || its bytes)."""

    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.hashfed.batch.v1+json"

    collection: str
    seq: int
    prev: str | None
    sealed_at: datetime
    adds: tuple[BatchAdd, ...]
    removes: tuple[BatchRemove, ...]

    def __post_init__(self) -> None:
        if (self.seq == 1) != (self.prev is None):
            raise FormatError("prev is null exactly for seq 1")

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "seq": self.seq,
            "prev": self.prev,
            "sealed_at": format_time(self.sealed_at),
            "adds": [a.to_dict() for a in self.adds],
            "removes": [r.to_dict() for r in self.removes],
        }

    @classmethod
    def from_dict(cls, data: Any) -> BatchPayload:
        d = _fields(data, "batch", {"collection", "seq", "prev", "sealed_at", "adds", "removes"})
        if not isinstance(d["adds"], list) or not isinstance(d["removes"], list):
            raise FormatError("adds and removes are lists")
        return cls(
            _str(d["collection"], "collection"),
            _int(d["seq"], "seq", 1),
            None if d["prev"] is None else _hex64(d["prev"], "prev"),
            parse_time(d["sealed_at"]),
            tuple(BatchAdd.from_dict(a) for a in d["adds"]),
            tuple(BatchRemove.from_dict(r) for r in d["removes"]),
        )

    def signed_at(self) -> datetime | None:
        return self.sealed_at


@dataclass(frozen=True)
class SnapshotChunk:
    """One chunk of at most 50,000 active signals, fetched separately and checked by digest."""

    index: int
    sha256: str
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "sha256": self.sha256, "count": self.count}

    @classmethod
    def from_dict(cls, data: Any) -> SnapshotChunk:
        d = _fields(data, "chunk", {"index", "sha256", "count"})
        return cls(
            _int(d["index"], "chunk index"), _hex64(d["sha256"], "chunk sha256"), _int(d["count"], "count")
        )


@dataclass(frozen=True)
class Snapshot(Payload):
    """A collection's state at seq S: root and frontier at S, SHA-256 of payload S, and chunk digests."""

    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.hashfed.snapshot.v1+json"

    collection: str
    seq: int
    root: bytes
    frontier: CompactRange
    payload_sha256: str
    chunks: tuple[SnapshotChunk, ...]

    def __post_init__(self) -> None:
        if self.frontier.size != self.seq:
            raise FormatError("snapshot frontier size differs from its seq")
        if self.frontier.root() != self.root:
            raise RootMismatchError("snapshot frontier does not rebuild its root")
        if [c.index for c in self.chunks] != list(range(len(self.chunks))):
            raise FormatError("snapshot chunks are numbered 0, 1, ...")

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "seq": self.seq,
            "root": b64encode(self.root),
            "frontier": self.frontier.to_dict(),
            "payload_sha256": self.payload_sha256,
            "chunks": [c.to_dict() for c in self.chunks],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Snapshot:
        d = _fields(data, "snapshot", {"collection", "seq", "root", "frontier", "payload_sha256", "chunks"})
        if not isinstance(d["chunks"], list):
            raise FormatError("chunks is a list")
        return cls(
            _str(d["collection"], "collection"),
            _int(d["seq"], "seq", 1),
            b64decode(d["root"], "root"),
            CompactRange.from_dict(d["frontier"]),
            _hex64(d["payload_sha256"], "payload_sha256"),
            tuple(SnapshotChunk.from_dict(c) for c in d["chunks"]),
        )


@dataclass(frozen=True)
class AuditEntry:
    """One audit log entry; leaf `seq` (0-based) of the audit log is SHA-256(0x00 || its canonical bytes)."""

    seq: int
    time: datetime
    actor: dict[str, Any]
    action: str
    subject: str
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": format_time(self.time),
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "details": self.details,
        }

    def to_bytes(self) -> bytes:
        """Canonical bytes: the leaf data."""
        return canonical_json(self.to_dict())

    def leaf_hash(self) -> bytes:
        """SHA-256(0x00 || canonical bytes)."""
        return leaf_hash(self.to_bytes())

    @classmethod
    def from_dict(cls, data: Any) -> AuditEntry:
        d = _fields(data, "audit entry", {"seq", "time", "actor", "action", "subject", "details"})
        if not isinstance(d["actor"], dict) or not isinstance(d["details"], dict):
            raise FormatError("actor and details are objects")
        canonical_json(d)  # refuses floats anywhere inside
        return cls(
            _int(d["seq"], "seq"),
            parse_time(d["time"]),
            d["actor"],
            _str(d["action"], "action"),
            _str(d["subject"], "subject"),
            d["details"],
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> AuditEntry:
        """Parse canonical bytes strictly."""
        return cls.from_dict(parse_canonical(data))


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256, as in `prev`, `payload_sha256` and pins."""
    return hashlib.sha256(data).hexdigest()


def open_payload(
    trusted: TrustedKeySet, envelope: bytes | Envelope, cls: type[P], at: datetime | None = None
) -> P:
    """Verify an envelope of `cls`'s payload type and return the parsed payload.

    Signatures are checked over the exact payload bytes first; then the payload is parsed, and the keys must
    be usable at the payload's own time (a batch's `sealed_at`) or else at `at`.
    """
    env = envelope if isinstance(envelope, Envelope) else Envelope.from_json(envelope)
    if env.payload_type != cls.PAYLOAD_TYPE:
        raise PayloadTypeError(f"payload type {env.payload_type!r}, expected {cls.PAYLOAD_TYPE!r}")
    role = role_for(cls.PAYLOAD_TYPE)
    keyset = trusted.keyset
    signed = verified_keyids(env, keyset.role_keys(role))
    if len(signed) < keyset.threshold(role):
        if verified_keyids(env, keyset.all_keys()) - signed:
            raise RoleError(f"a key that signed this {cls.PAYLOAD_TYPE} does not hold the {role} role")
        raise ThresholdError(f"{len(signed)} of {keyset.threshold(role)} required {role} signatures")
    payload = cls.from_bytes(env.payload)
    when = payload.signed_at() or at
    keyset.check_threshold(signed, role, when)
    return payload
