"""The webhooks' tables: each partner's endpoint and each checkpoint delivery with its attempts.

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
    """One checkpoint announced to one partner, with its attempts."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("partner_id", "collection_id", "size"),
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # also the Hashfed-Delivery header
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"))
    collection_id: Mapped[str] = mapped_column(String(36))
    size: Mapped[int] = mapped_column(BigInteger)  # the checkpoint size that triggered it
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)  # HTTP status, None: no answer
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
