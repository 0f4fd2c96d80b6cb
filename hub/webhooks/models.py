"""The webhooks' tables: each partner's endpoint and each delivery (a checkpoint, or a dispute's decision) with
its attempts.

`service` beside this module reads and writes them; hub/models.py gathers them for Alembic.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime


class WebhookEndpoint(Base):
    """A partner's webhook URL (one per partner)."""

    __tablename__ = "webhook_endpoints"

    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """One event announced to one partner, with its attempts: a collection's new checkpoint, or a decision on a
    dispute the partner opened or whose signal it contributed."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("partner_id", "event", "collection_id", "size", name="uq_webhook_deliveries_event"),
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        CheckConstraint("event IN ('checkpoint', 'dispute')", name="event"),
        CheckConstraint("(event = 'dispute') = (dispute_id IS NOT NULL)", name="dispute"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # also the Hashfed-Delivery header
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"))
    event: Mapped[str] = mapped_column(String(12))  # checkpoint | dispute
    collection_id: Mapped[str] = mapped_column(String(36))
    # A checkpoint: the size that triggered it. A dispute: the audit seq of the decision (one delivery each).
    size: Mapped[int] = mapped_column(BigInteger)
    dispute_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)  # HTTP status, None: no answer
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
