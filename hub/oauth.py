"""OAuth 2.0 for machines: the client credentials grant, revocation, introspection and metadata.

authlib's AuthorizationServer does the protocol; this module supplies its storage (clients, opaque access
tokens stored as SHA-256 digests, seen `jti`s in the database so a replay is refused across processes),
the transport rule (HTTPS, or plain HTTP from a loopback address only) and the audit entries.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.db import Base, UTCDateTime, utcnow

log = logging.getLogger(__name__)

# How long a seen client-assertion `jti` is kept: longer than any assertion we accept may live.
JTI_RETENTION = timedelta(hours=1)
# Longest lifetime (exp - now) of a client assertion the hub accepts, in seconds.
MAX_ASSERTION_LIFETIME_S = 300


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


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token_string() -> str:
    """An opaque bearer token with 256 bits of randomness."""
    return secrets.token_urlsafe(32)


def find_token(session: Session, token: str) -> AccessToken | None:
    return session.get(AccessToken, token_digest(token))


def store_token(
    session: Session,
    token: str,
    *,
    partner_id: str,
    scopes: frozenset[str] | set[str] | list[str],
    ttl_s: int,
    client_id: str | None = None,
    user_id: str | None = None,
    name: str | None = None,
    now: datetime | None = None,
) -> AccessToken:
    now = now or utcnow()
    row = AccessToken(
        digest=token_digest(token),
        partner_id=partner_id,
        client_id=client_id,
        user_id=user_id,
        scopes=" ".join(sorted(scopes)),
        name=name,
        issued_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
    )
    session.add(row)
    session.flush()
    return row


def sweep(session: Session, now: datetime) -> int:
    """Delete tokens expired for a day and seen jtis past retention (a scheduled job; run as SYSTEM)."""
    from sqlalchemy import delete

    cutoff = now - timedelta(days=1)
    n = session.execute(delete(AccessToken).where(AccessToken.expires_at < cutoff)).rowcount or 0
    session.execute(delete(UsedJti).where(UsedJti.expires_at < now))
    return int(n)
