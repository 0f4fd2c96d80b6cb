"""Identity's tables: partners (the tenants), their OAuth clients, issued access tokens, seen client-assertion
`jti`s, staff users and their console sessions, with the scopes each kind of partner may hold."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, Text
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


# Every scope the hub knows, and which of them a partner of each kind may ever hold.
SCOPES: tuple[str, ...] = (
    "feed:read",
    "hashes:write",
    "match",
    "reports:write",
    "audit:read",
    "exports:read",
    "governance",
    "metrics:read",  # an operator's Prometheus scrape: /metrics names every collection
)
KIND_SCOPES: dict[str, frozenset[str]] = {
    PartnerKind.PLATFORM: frozenset({"feed:read", "hashes:write", "match", "reports:write"}),
    PartnerKind.INTAKE: frozenset({"feed:read", "hashes:write", "match"}),
    PartnerKind.GOVERNANCE: frozenset({"feed:read", "audit:read", "exports:read", "governance", "metrics:read"}),
    PartnerKind.REGULATOR: frozenset({"audit:read", "exports:read"}),
}

AUTH_METHODS = ("private_key_jwt", "client_secret_basic")


class OAuthClient(Base):
    """A partner's machine: authenticates with a registered JWKS (preferred) or a secret."""

    __tablename__ = "oauth_clients"
    __table_args__ = (
        CheckConstraint("auth_method IN ('private_key_jwt', 'client_secret_basic')", name="auth_method"),
    )

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    auth_method: Mapped[str] = mapped_column(String(32))
    # Public JWKS (JSON) for private_key_jwt; the hub never holds a client's private key.
    jwks: Mapped[str | None] = mapped_column(Text, nullable=True)
    # HMAC-SHA256 of the secret under the hub secret (hex); the plaintext is shown once and never stored.
    secret_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Space-separated scopes the client may be issued, and those a request without `scope` gets.
    scopes: Mapped[str] = mapped_column(Text)
    default_scopes: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # When a failed authentication of this client was last audited: at most one entry a minute.
    failure_logged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())



class AccessToken(Base):
    """An issued bearer token: machine (client set) or personal (user set). Only its digest is stored."""

    __tablename__ = "access_tokens"

    # Lowercase hex SHA-256 of the token string; the token itself is never stored.
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    client_id: Mapped[str | None] = mapped_column(
        ForeignKey("oauth_clients.client_id"), nullable=True, index=True
    )
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    scopes: Mapped[str] = mapped_column(Text)
    # A personal token's label, chosen by its user.
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())

    def is_active(self, now: datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now


class UsedJti(Base):
    """A client assertion's `jti` already accepted: the same one again is a replay (RFC 7523 §3)."""

    __tablename__ = "oauth_used_jtis"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Kept until then; the token sweep deletes older rows.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


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
    # Failed logins are audited at most once a minute per user, so guessing cannot flood the log.
    failure_logged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ConsoleSession(Base):
    """A logged-in browser: the cookie holds a random value, the table only its SHA-256."""

    __tablename__ = "console_sessions"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


