"""The hub's audit log: one append-only Merkle log of canonical-JSON entries.

`record()` is what every service calls: it takes the next sequence number and inserts the entry in the
caller's transaction, so an action and its audit entry commit together or not at all. Hashing the tree
and signing checkpoints is left to a scheduled job, so writers never serialize on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import rfc8785
from sqlalchemy import BigInteger, LargeBinary, func, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.db import Base, UTCDateTime, utcnow

# Key of the PostgreSQL advisory lock that orders audit writers (any constant unique to this purpose).
AUDIT_SEQ_LOCK = 0x68617368_6665_6401  # "hashfed" + 1


class AuditEntry(Base):
    """One leaf of the audit log. Append-only: triggers refuse UPDATE, DELETE and TRUNCATE."""

    __tablename__ = "audit_entries"

    # Leaf index in the audit Merkle log, gapless from 0.
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # RFC 8785 canonical JSON of the entry: exactly the bytes that are hashed.
    entry: Mapped[bytes] = mapped_column(LargeBinary)
    # SHA-256(0x00 || entry), RFC 9162 leaf hash.
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class Actor:
    """Who did it: a partner's client, a staff user, the operator's CLI or the hub itself."""

    type: str  # partner | user | operator | system
    partner: str | None = None
    client: str | None = None
    user: str | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {"type": self.type}
        for key in ("partner", "client", "user", "name"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def system(cls, job: str) -> Actor:
        return cls(type="system", name=job)

    @classmethod
    def operator(cls) -> Actor:
        return cls(type="operator", name="cli")


@dataclass(frozen=True)
class Recorded:
    """What `record` wrote: the entry's sequence number and its exact bytes."""

    seq: int
    entry: bytes
    leaf_hash: bytes
    details: dict[str, Any] = field(default_factory=dict)


def rfc3339(moment: datetime) -> str:
    """UTC time with microseconds and a trailing Z: no floats in entries."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def next_seq(session: Session) -> int:
    """The next leaf index, taken under a lock held until the caller's transaction ends."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_SEQ_LOCK})
    # On SQLite every write transaction starts with BEGIN IMMEDIATE (hub.db), which already serializes writers.
    current = session.execute(select(func.max(AuditEntry.seq))).scalar_one_or_none()
    return 0 if current is None else current + 1


def record(
    session: Session,
    actor: Actor,
    action: str,
    subject: dict[str, Any],
    details: dict[str, Any] | None = None,
    *,
    now: datetime | None = None,
) -> Recorded:
    """Append one audit entry in the caller's transaction and return its sequence number.

    `subject` names what was acted on by id; `details` must hold no raw hash values or personal data
    (refer to hashes by id or keyed digest). One call per request: a bulk action lists ids or their digest.
    """
    moment = now or utcnow()
    seq = next_seq(session)
    body = {
        "seq": seq,
        "time": rfc3339(moment),
        "actor": actor.to_dict(),
        "action": action,
        "subject": subject,
        "details": details or {},
    }
    entry = rfc8785.dumps(body)
    leaf = hashlib.sha256(b"\x00" + entry).digest()
    session.add(AuditEntry(seq=seq, entry=entry, leaf_hash=leaf, recorded_at=moment))
    session.flush()
    return Recorded(seq=seq, entry=entry, leaf_hash=leaf, details=body["details"])
