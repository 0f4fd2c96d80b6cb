"""The upstreams' tables: what each upstream is, how far it has fed its local collection, and which local
signal each upstream signal became (so that a removal upstream removes the right one here).

Not partner-owned (the operator configures upstreams; the scheduler pulls them), so no row-level security, as
`signal_flags`. Credentials are only ever stored encrypted (`hub/upstreams/secrets.py`).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime


class UpstreamKind(enum.StrEnum):
    HASHFED = "hashfed"  # another hashfed hub, read through the partner kit's verified sync
    STOPNCII = "stopncii"  # a StopNCII-shaped API, read through threatexchange's StopNCIIAPI


class Upstream(Base):
    """An upstream feeding one local collection."""

    __tablename__ = "upstreams"
    __table_args__ = (
        CheckConstraint("kind IN ('hashfed', 'stopncii')", name="kind"),
        CheckConstraint("position >= 0", name="position"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    url: Mapped[str] = mapped_column(Text)
    # The local collection it feeds, and the local partner its hashes are contributed as (a contributor there).
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"), index=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"))
    # hashfed: the upstream's collection id, the OAuth client id at the upstream (not a secret) and the SHA-256
    # of the upstream key set pinned at `add` (got out of band). NULL for stopncii.
    upstream_collection: Mapped[str | None] = mapped_column(String(200), nullable=True)
    client_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    keyset_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # AES-GCM under a key derived from the hub secret: nonce || ciphertext of the credentials' JSON.
    credentials: Mapped[bytes] = mapped_column(LargeBinary)
    enabled: Mapped[bool] = mapped_column(Boolean)
    # How far the local collection is fed: hashfed, the upstream batch seq; stopncii, the last nextSetTimestamp.
    position: Mapped[int] = mapped_column(BigInteger)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Why the last pull fed nothing (a failed verification, an unreachable upstream); NULL after a good pull.
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The audit entry of `upstreams add`.
    audit_seq: Mapped[int] = mapped_column(BigInteger)


class UpstreamSignal(Base):
    """Which local signal an upstream signal became; a removal upstream retracts that signal here."""

    __tablename__ = "upstream_signals"
    __table_args__ = (Index("ix_upstream_signals_signal", "signal_id"),)

    upstream_id: Mapped[str] = mapped_column(ForeignKey("upstreams.id"), primary_key=True)
    # hashfed: the upstream signal id; stopncii: "<signalType>:<hashValue>" (StopNCII has no signal ids).
    ref: Mapped[str] = mapped_column(String(200), primary_key=True)
    signal_id: Mapped[str] = mapped_column(String(36))
    # The audit entry of the import that added it.
    audit_seq: Mapped[int] = mapped_column(BigInteger)
