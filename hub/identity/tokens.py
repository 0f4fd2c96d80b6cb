"""The token store: opaque bearer tokens kept as SHA-256 digests, looked up, issued, revoked and swept.

Kept apart from the authorization server (hub/identity/oauth.py) so that partners, people and the request
principal use it without importing authlib's server.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from hub.db import utcnow
from hub.identity.models import AccessToken, UsedJti


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


def revoke_tokens(
    session: Session, now: datetime, *, client_id: str | None = None, partner_id: str | None = None
) -> int:
    """Revoke every outstanding token of a client, or of a partner (its clients' and its people's).

    Returns how many; the caller records the audit entry in the same transaction.
    """
    if (client_id is None) == (partner_id is None):
        raise ValueError("revoke the tokens of one client or of one partner")
    which = AccessToken.client_id == client_id if client_id is not None else AccessToken.partner_id == partner_id
    result = session.execute(
        update(AccessToken).where(which, AccessToken.revoked_at.is_(None)).values(revoked_at=now)
    )
    session.flush()
    return int(getattr(result, "rowcount", 0) or 0)


def sweep(session: Session, now: datetime) -> int:
    """Delete tokens expired for a day and seen jtis past retention (a scheduled job; run as SYSTEM)."""
    cutoff = now - timedelta(days=1)
    result = session.execute(delete(AccessToken).where(AccessToken.expires_at < cutoff))
    n = getattr(result, "rowcount", 0) or 0
    session.execute(delete(UsedJti).where(UsedJti.expires_at < now))
    return int(n)
