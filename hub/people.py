"""People: staff users of governance and regulator partners, their console sessions and personal tokens.

Passwords are hashed with Argon2id (argon2-cffi). A console session is a server-side row keyed by the
SHA-256 of a random cookie value; the cookie is HttpOnly, Secure and SameSite=Strict. API use goes through
personal tokens (bearer, stored as a digest), scoped to what the user's partner kind allows.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime, utcnow
from hub.tenants import PartnerKind, new_id

# Partner kinds whose people may have accounts; platforms and intake services are machines.
PEOPLE_KINDS = (PartnerKind.GOVERNANCE.value, PartnerKind.REGULATOR.value)
SESSION_TTL = timedelta(hours=8)
PERSONAL_TOKEN_TTL = timedelta(days=90)
MIN_PASSWORD = 12
_hasher = PasswordHasher()
# Verified against when the email is unknown, so a miss costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class User(Base):
    """A person who works for a governance or regulator partner."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("status IN ('active', 'disabled')", name="status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    # Lower-cased; unique across the hub (the login name).
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # Argon2id encoded hash (salt and parameters inside).
    password_hash: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ConsoleSession(Base):
    """A logged-in browser: the cookie holds a random value, the table only its SHA-256."""

    __tablename__ = "console_sessions"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
