"""The exports table: what each bundle was drawn from, so that it can be made again byte for byte.

A bundle is not stored: its data files are a function of the period, the audit checkpoint, the key sets
and append-only rows, so `GET /v1/exports/{id}` writes it again and checks its SHA-256 against this row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime


class Export(Base):
    """One transparency export of a period; never changed once written."""

    __tablename__ = "exports"
    __table_args__ = (
        CheckConstraint("period_to > period_from", name="period"),
        CheckConstraint("first_seq <= end_seq AND end_seq < checkpoint_size", name="entries"),
        CheckConstraint("threshold >= 1", name="threshold"),
        Index("ix_exports_published", "published", "period_to"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    period_label: Mapped[str] = mapped_column(String(64))
    period_from: Mapped[datetime] = mapped_column(UTCDateTime())
    period_to: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The partner whose regulator or governance client asked for it; null when the operator's CLI made it.
    partner_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # The audit checkpoint it was drawn at, the period's entries [first_seq, end_seq), the key set version.
    checkpoint_size: Mapped[int] = mapped_column(BigInteger)
    first_seq: Mapped[int] = mapped_column(BigInteger)
    end_seq: Mapped[int] = mapped_column(BigInteger)
    keyset_version: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[int] = mapped_column(Integer)
    # The signed manifest's DSSE envelope (canonical JSON), reused when the bundle is written again.
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    # The published (suppressed) aggregates, canonical JSON: what /transparency shows.
    aggregates: Mapped[str] = mapped_column(Text)
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    bundle_bytes: Mapped[int] = mapped_column(BigInteger)
    # Shown on the public page when true (the operator publishes a period with `hashfed exports create --publish`).
    published: Mapped[bool] = mapped_column(Boolean)
    audit_seq: Mapped[int] = mapped_column(BigInteger)
