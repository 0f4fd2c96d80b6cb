"""Partners: the tenants of the hub. Every partner-owned row elsewhere refers to one."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime, utcnow


class PartnerKind(enum.StrEnum):
    PLATFORM = "platform"
    INTAKE = "intake"
    GOVERNANCE = "governance"
    REGULATOR = "regulator"


class PartnerStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


def new_id() -> str:
    return str(uuid.uuid4())


class Partner(Base):
    """A platform, intake service, governance body or regulator using the hub."""

    __tablename__ = "partners"
    __table_args__ = (
        CheckConstraint("kind IN ('platform', 'intake', 'governance', 'regulator')", name="kind"),
        CheckConstraint("status IN ('active', 'suspended')", name="status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=PartnerStatus.ACTIVE.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
