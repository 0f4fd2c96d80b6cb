"""Factories for partners, OAuth clients and tokens, shared by every hub test.

They write through the services (so the audit log is as in production) as the operator, with the tenant
set to `system` for row-level security. Use them with the `session` fixture; they flush, never commit.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy.orm import Session

from hub import rls
from hub.config import Settings
from hub.identity import tenants
from hub.identity.models import KIND_SCOPES, AccessToken, OAuthClient, Partner, PartnerKind
from hub.identity.tokens import new_token_string, store_token
from hub.transparency.auditlog import Actor
from hub.transparency.keys import ensure_hub_secret

HUB_SECRET = b"\x01" * 32  # for clients whose secret no test presents


def hub_secret(settings: Settings) -> bytes:
    """The hub secret the app under test uses (created under settings.keys_path on first use)."""
    return ensure_hub_secret(settings.keys_path)


def as_system(session: Session) -> None:
    """Let the test see every partner's rows (PostgreSQL RLS), as the CLI and jobs do."""
    rls.set_tenant(session, rls.SYSTEM)


def partner(session: Session, *, kind: str = "platform", name: str | None = None) -> Partner:
    as_system(session)
    return tenants.create_partner(session, name or f"partner-{uuid.uuid4().hex[:8]}", kind, Actor.operator())


@dataclass
class Client:
    """A client and what its tests need to authenticate: the secret or the private key."""

    row: OAuthClient
    secret: str | None = None
    key: ECKey | None = None

    @property
    def client_id(self) -> str:
        return self.row.client_id

    def assertion(self, audience: str, **overrides: Any) -> str:
        """A private_key_jwt client assertion (RFC 7523); override claims or pass `key=` another key."""
        key = overrides.pop("key", self.key)
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_hex(16),
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)


def new_key() -> ECKey:
    key = ECKey.generate_key("P-256", auto_kid=True)
    return key


def public_jwks(key: ECKey) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False)]}


def client(
    session: Session,
    owner: Partner,
    *,
    scopes: list[str] | None = None,
    jwks: bool = False,
    hub_secret: bytes = HUB_SECRET,
    default_scopes: list[str] | None = None,
) -> Client:
    """A client of `owner` with a secret (default) or a JWKS; all scopes its kind allows by default."""
    as_system(session)
    granted = sorted(KIND_SCOPES[PartnerKind(owner.kind)]) if scopes is None else scopes
    key = new_key() if jwks else None
    issued = tenants.create_client(
        session,
        owner.id,
        "test client",
        granted,
        hub_secret=hub_secret,
        actor=Actor.operator(),
        jwks=json.dumps(public_jwks(key)) if key else None,
        default_scopes=default_scopes,
    )
    return Client(issued.client, issued.secret, key)


def token(
    session: Session,
    owner: Partner,
    scopes: list[str] | set[str],
    *,
    ttl_s: int = 600,
    client_row: OAuthClient | None = None,
) -> str:
    """A bearer token for `owner` with exactly `scopes` (a client is made if none is given)."""
    as_system(session)
    if client_row is None:
        granted = sorted(KIND_SCOPES[PartnerKind(owner.kind)])
        client_row = tenants.create_client(
            session, owner.id, "token client", granted, hub_secret=HUB_SECRET, actor=Actor.operator()
        ).client
    value = new_token_string()
    store_token(
        session, value, partner_id=owner.id, scopes=set(scopes), ttl_s=ttl_s, client_id=client_row.client_id
    )
    return value


def auth(token_value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_value}"}


__all__ = [
    "AccessToken",
    "Client",
    "as_system",
    "auth",
    "client",
    "hub_secret",
    "new_key",
    "partner",
    "public_jwks",
    "token",
]
