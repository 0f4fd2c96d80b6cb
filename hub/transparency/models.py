"""The audit log's tables (entries, the writers' head row, Merkle nodes, checkpoints) and the keys' tables
(signed key set versions, the public half of each online signing key).

`auditlog` and `keys` beside this module read and write them; hub/models.py gathers them for Alembic.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Integer, LargeBinary, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime


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


class AuditHead(Base):
    """One row: the next audit seq and the newest entry time. Writers take it with one UPDATE ... RETURNING.

    A row lock instead of an advisory lock plus a read of the last entry: one round trip per entry fewer,
    and the lock still orders writers and is held until the writer's transaction ends (gapless seq).
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    next_seq: Mapped[int] = mapped_column(BigInteger)
    # Time of the newest entry, whole seconds: entry times never go backwards.
    last_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AuditNode(Base):
    """A perfect subtree hash: (level, idx) covers leaves [idx * 2**level, (idx + 1) * 2**level)."""

    __tablename__ = "audit_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(Base):
    """A signed checkpoint of the audit log; the largest size is the integrated tree size."""

    __tablename__ = "audit_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    # The C2SP signed note exactly as served.
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class KeySetRecord(Base):
    """One signed key set version (DSSE envelope bytes). Append-only."""

    __tablename__ = "key_sets"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    # Lowercase hex SHA-256 of the payload: what a partner pins.
    payload_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SigningKey(Base):
    """The public half of an online signing key and the period it may sign in."""

    __tablename__ = "signing_keys"
    __table_args__ = (
        CheckConstraint(
            "role IN ('batch', 'checkpoint', 'timestamp', 'audit', 'export', 'collection')", name="role"
        ),
    )

    # Lowercase hex SHA-256 of the raw public key (the DSSE keyid).
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
