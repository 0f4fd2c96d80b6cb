"""The feed's tables: collections and their members, signals and their pending changes, sealed batches and
each collection's Merkle log (nodes, checkpoints, head).

The services beside this module (collections, signals, batches, snapshots, revocation) read and write them;
hub/models.py gathers them with every other domain's tables for Alembic.
"""

from __future__ import annotations

import base64
import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from audit.canonical import canonical_json, parse_json
from audit.payloads import BatchPayload
from hub.db import Base, UTCDateTime, utcnow
from partners.matching.signals import HEX_LEN, SignalType

# Every signal type the feed takes: the fixed-width hex types, and vpdq (its value column holds a digest).
FEED_TYPES: tuple[str, ...] = (*(t.value for t in HEX_LEN), SignalType.VPDQ.value)
DEFAULT_VPDQ_PERCENT = 80  # P of the vPDQ rule of a collection that does not set one
MAX_CASE_REF_LENGTH = 200
MAX_IDEMPOTENCY_KEY_LENGTH = 200


class Access(enum.StrEnum):
    READER = "reader"
    CONTRIBUTOR = "contributor"


class SignalStatus(enum.StrEnum):
    ACTIVE = "active"
    RETRACTED = "retracted"
    RETIRED = "retired"
    QUARANTINED = "quarantined"  # withheld from the feed while staff review a dispute
    RELEASED = "released"  # a quarantine that ended: the hash was published again under a new signal id


class Pending(enum.StrEnum):
    """A change waiting for the sealer."""

    ADD = "add"
    REMOVE = "remove"


class Collection(Base):
    """A bank of signals with its own Merkle log of batches."""

    __tablename__ = "collections"
    __table_args__ = (
        CheckConstraint("pdq_threshold >= 0 AND pdq_threshold <= 256", name="pdq_threshold"),
        CheckConstraint("min_quality >= 0 AND min_quality <= 100", name="min_quality"),
        CheckConstraint("vpdq_percent >= 1 AND vpdq_percent <= 100", name="vpdq_percent"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"))
    category: Mapped[str] = mapped_column(String(32))
    # Comma-separated subset of the signal types (`collections.SIGNAL_TYPES`), in that order.
    signal_types: Mapped[str] = mapped_column(String(100))
    pdq_threshold: Mapped[int] = mapped_column(Integer)
    min_quality: Mapped[int] = mapped_column(Integer)
    # P of the vPDQ rule: a video matches when at least P % of its frames and of the stored video's match.
    vpdq_percent: Mapped[int] = mapped_column(Integer, default=DEFAULT_VPDQ_PERCENT, server_default=text("80"))
    # The latest signed descriptor (DSSE envelope JSON) exactly as served, and how many times it was signed.
    descriptor: Mapped[bytes] = mapped_column(LargeBinary)
    descriptor_version: Mapped[int] = mapped_column(Integer)
    # Audit entry of the change that produced the current descriptor.
    descriptor_audit_seq: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Free text for operators; never signed or served to partners.
    description: Mapped[str] = mapped_column(Text, default="")

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(self.signal_types.split(","))


class CollectionMember(Base):
    """A partner's access to a collection: one row per (partner, access)."""

    __tablename__ = "collection_members"
    __table_args__ = (CheckConstraint("access IN ('reader', 'contributor')", name="access"),)

    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"), primary_key=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), primary_key=True, index=True)
    access: Mapped[str] = mapped_column(String(20), primary_key=True)
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Audit entry of the grant.
    audit_seq: Mapped[int] = mapped_column(BigInteger)


class Signal(Base):
    """One hash in one collection, from submission to its removal.

    Two indexes only, each with a reader: the primary key (retraction, reports, the sealer's join) and the
    partial unique index of active values (deduplication, the deny list's sweep, the matcher's lookups). No
    foreign keys: their per-row checks were a third of bulk ingest on PostgreSQL, and the service checks
    both under the audit lock (the collection is contributable, the contributor is the token's partner);
    collections and partners are never deleted (partners are suspended). On PostgreSQL the key columns
    (ids, type, value, status) collate "C" (migration 0010): bytewise comparisons in every index.
    """

    __tablename__ = "signals"
    __table_args__ = (
        CheckConstraint("type IN (" + ", ".join(f"'{t}'" for t in FEED_TYPES) + ")", name="type"),
        CheckConstraint("status IN (" + ", ".join(f"'{s.value}'" for s in SignalStatus) + ")", name="status"),
        CheckConstraint("quality IS NULL OR (quality >= 0 AND quality <= 100)", name="quality"),
        # Deduplication: one active signal per (type, value) in a collection; a retracted one may come back.
        Index(
            "uq_signals_active_value",
            "collection_id",
            "type",
            "value",
            unique=True,
            postgresql_where=text("status = 'active'"),
        ),
        # The quarantined values of a collection: a submission may not add them again while under review.
        Index(
            "ix_signals_quarantined",
            "collection_id",
            "type",
            "value",
            postgresql_where=text("status = 'quarantined'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    collection_id: Mapped[str] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(10))
    # Normalized: lowercase hex; for vpdq the SHA-256 of the canonical frames text, which is in `vpdq_values`.
    value: Mapped[str] = mapped_column(String(64))
    quality: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Canonical JSON list of tags, or NULL.
    tags: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The first contributor. Its contribution without a case is the claim `plain_claim` (no row: a platform's bulk
    # submission, which carries no case, writes no claim rows); every other contribution is a row of `signal_claims`.
    contributor_id: Mapped[str] = mapped_column(String(36))
    plain_claim: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(12))
    # Audit entry of the submission (the batches that published it are in `signal_seqs`).
    added_audit_seq: Mapped[int] = mapped_column(BigInteger)
    # Audit entry of the retraction or retirement.
    removed_audit_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    removal_reason: Mapped[str | None] = mapped_column(String(20), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class VpdqValue(Base):
    """The canonical frames text of a vpdq value, once per value, under the SHA-256 that `signals.value` and
    `pending_changes.value` hold for it (docs/adr/0014). Content-addressed and never changed or deleted: a
    digest names one text, whichever collections hold it. Reached only through a signal (row-level security
    applies there); batches, snapshots and the hosted matcher read the text from here."""

    __tablename__ = "vpdq_values"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    frames: Mapped[str] = mapped_column(Text)


class SignalClaim(Base):
    """A partner's claim on a signal, for one of its cases ('' for a contribution without a case), besides the
    first contributor's claim without a case, which is the signal's `plain_claim`.

    The case reference is kept only as a keyed digest (`case_digest` in hub/feed/signals.py), so the table
    alone does not tell which case a hash belongs to. A signal leaves the feed when its last claim is withdrawn.
    """

    __tablename__ = "signal_claims"
    __table_args__ = (
        # Withdrawal finds a case's claims; claims without a case (most of a platform's bulk) stay out of it.
        Index("ix_signal_claims_case", "partner_id", "case_digest", postgresql_where=text("case_digest <> ''")),
    )

    signal_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    partner_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The submission that made the claim.
    audit_seq: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PendingChange(Base):
    """A change waiting for the sealer: a row per add or remove, deleted when its batch is sealed.

    Submission and retraction insert here; the sealer reads a collection's rows in signal id order, so it
    never scans or rewrites the wide `signals` rows to find its work. A row carries what its batch entry
    needs (a copy of the signal's type, value, quality and tags, or the removal's reason), so the sealer
    does not read `signals` either; the `entry` constraint (migration 0015) makes every row carry them. A
    signal has at most one pending change: retracting a never-published add deletes the add instead.
    """

    __tablename__ = "pending_changes"
    __table_args__ = (
        CheckConstraint("op IN ('add', 'remove')", name="op"),
        CheckConstraint(
            "(op = 'add' AND type IS NOT NULL AND value IS NOT NULL) OR (op = 'remove' AND reason IS NOT NULL)",
            name="entry",
        ),
    )

    collection_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    signal_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    op: Mapped[str] = mapped_column(String(6))
    # Audit entry of the submission or removal that authorized the change (the batch entry's audit_seq).
    audit_seq: Mapped[int] = mapped_column(BigInteger)
    # An add's batch entry, copied from the signal at submission (a signal's hash never changes).
    type: Mapped[str | None] = mapped_column(String(10), nullable=True)
    value: Mapped[str | None] = mapped_column(String(64), nullable=True)
    quality: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tags: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A remove's reason (the signal's removal_reason).
    reason: Mapped[str | None] = mapped_column(String(20), nullable=True)
    # An add fed from an upstream (hub/upstreams): canonical JSON of its batch entry's `provenance`, else NULL.
    provenance: Mapped[str | None] = mapped_column(Text, nullable=True)


class SignalSeq(Base):
    """The batches that published a signal: the seq of its add, and of its removal once that is sealed.

    A row exists from the seal of the signal's add on (no row: never published). Kept out of `signals` so that
    sealing inserts one narrow row per add instead of rewriting a wide signal row (a new tuple version, and a
    full-page image of every signal page it touches for the first time since a checkpoint); readers join it
    on the primary key. On PostgreSQL a row is visible exactly when its signal is, and only the sealer
    (SYSTEM) writes.
    """

    __tablename__ = "signal_seqs"

    signal_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    added_seq: Mapped[int] = mapped_column(BigInteger)
    removed_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class RetiredValue(Base):
    """The deny list: a (type, value) governance retired may never be submitted again (409)."""

    __tablename__ = "retired_values"

    type: Mapped[str] = mapped_column(String(10), primary_key=True)
    value: Mapped[str] = mapped_column(String(64), primary_key=True)
    retired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    audit_seq: Mapped[int] = mapped_column(BigInteger)


class IdempotencyKey(Base):
    """A submission's Idempotency-Key, per partner: a replay with the same body gets the stored response."""

    __tablename__ = "idempotency_keys"

    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_IDEMPOTENCY_KEY_LENGTH), primary_key=True)
    # Lowercase hex SHA-256 of the request (collection and body bytes).
    request_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Batch(Base):
    """One sealed batch: the exact payload bytes and the signatures of its envelope. Append-only.

    The envelope is stored in its two parts: its canonical JSON is a function of them (`envelope_of`), and
    storing it whole kept each batch's bytes twice, the second time in base64.
    """

    __tablename__ = "batches"

    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    # Canonical JSON of the DSSE envelope's `signatures` list.
    signatures: Mapped[bytes] = mapped_column(LargeBinary)
    # Lowercase hex SHA-256 of the payload: the next batch's `prev` and this batch's ETag.
    payload_sha256: Mapped[str] = mapped_column(String(64))
    adds: Mapped[int] = mapped_column(Integer)
    removes: Mapped[int] = mapped_column(Integer)
    sealed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The audit entry recording the seal.
    audit_seq: Mapped[int] = mapped_column(BigInteger)

    @property
    def envelope(self) -> bytes:
        """Canonical JSON of the DSSE envelope, exactly as served."""
        return envelope_of(bytes(self.payload), bytes(self.signatures))


class CollectionNode(Base):
    """A perfect subtree hash of a collection's log, keyed as `audit.log` keys them. Append-only."""

    __tablename__ = "collection_nodes"

    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"), primary_key=True)
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class CollectionCheckpoint(Base):
    """Every checkpoint signed for a collection (without cosignatures). Append-only: evidence."""

    __tablename__ = "collection_checkpoints"

    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    audit_seq: Mapped[int] = mapped_column(BigInteger)


class CollectionHead(Base):
    """The latest state of a collection's log: what the feed serves and what the sealer extends."""

    __tablename__ = "collection_heads"

    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    # SHA-256 of the latest payload (the next `prev`), NULL before the first batch.
    payload_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The latest checkpoint with its newest cosignature, exactly as served.
    note: Mapped[str] = mapped_column(Text)
    cosigned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class FeedAck(Base):
    """A partner's latest acknowledgement of a collection's log: the size it applied and verified.

    The `feed.ack` audit entry is the record; this row, written in the same transaction, is its latest state,
    so that "which partners hold seq S" is a look-up (a case's status counts them) rather than a scan of the
    audit log. Under row-level security by partner.
    """

    __tablename__ = "feed_acks"
    __table_args__ = (Index("ix_feed_acks_collection", "collection_id", "size"),)

    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), primary_key=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id"), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    # The `feed.ack` audit entry of this acknowledgement.
    audit_seq: Mapped[int] = mapped_column(BigInteger)
    acked_at: Mapped[datetime] = mapped_column(UTCDateTime())



def envelope_of(payload: bytes, signatures: bytes) -> bytes:
    """Canonical JSON of a batch's DSSE envelope from its payload and its stored `signatures` JSON."""
    return canonical_json(
        {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": BatchPayload.PAYLOAD_TYPE,
            "signatures": parse_json(signatures),
        }
    )
