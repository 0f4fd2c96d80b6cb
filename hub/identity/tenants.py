"""Partners (the tenants of the hub) and their OAuth clients, with the operator's services on them.

Every partner-owned row elsewhere refers to a partner. Services here take a Session, write their audit
entry in the caller's transaction and flush; they never commit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.canonical import canonical_json
from audit.errors import FormatError
from hub.db import utcnow
from hub.errors import ConflictError, NotFoundError, ValidationError
from hub.identity.models import (
    KIND_SCOPES,
    SCOPES,
    OAuthClient,
    Partner,
    PartnerKind,
    PartnerStatus,
    new_id,
)
from hub.identity.tokens import revoke_tokens
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor


@dataclass(frozen=True)
class IssuedClient:
    """A created or rotated client, with the secret shown once (None for private_key_jwt)."""

    client: OAuthClient
    secret: str | None


def secret_digest(hub_secret: bytes, client_secret: str) -> str:
    """Keyed digest of a client secret: a leaked table alone does not allow offline guessing."""
    msg = b"hashfed/client-secret/v1\x00" + client_secret.encode()
    return hmac.new(hub_secret, msg, hashlib.sha256).hexdigest()


def check_secret(hub_secret: bytes, client: OAuthClient, client_secret: str) -> bool:
    if client.secret_digest is None:
        return False
    return hmac.compare_digest(client.secret_digest, secret_digest(hub_secret, client_secret))


# --- partners --------------------------------------------------------------------------------------------


def get_partner(session: Session, partner_id: str) -> Partner:
    partner = session.get(Partner, partner_id)
    if partner is None:
        partner = session.scalars(select(Partner).where(Partner.name == partner_id)).first()
    if partner is None:
        raise NotFoundError(f"no partner {partner_id!r}")
    return partner


def create_partner(session: Session, name: str, kind: str, actor: Actor) -> Partner:
    """A new active partner; its name is unique."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationError("a partner name has 1 to 200 characters")
    if kind not in set(PartnerKind):
        raise ValidationError(f"kind must be one of {', '.join(PartnerKind)}")
    if session.scalars(select(Partner.id).where(Partner.name == name)).first() is not None:
        raise ConflictError(f"a partner named {name!r} exists")
    partner = Partner(id=new_id(), name=name, kind=kind, status=PartnerStatus.ACTIVE.value)
    session.add(partner)
    session.flush()
    auditlog.record(session, actor, "partner.create", f"partner/{partner.id}", {"name": name, "kind": kind})
    return partner


def list_partners(session: Session) -> list[Partner]:
    return list(session.scalars(select(Partner).order_by(Partner.name)))


def set_partner_status(session: Session, partner_id: str, status: str, actor: Actor) -> Partner:
    """Suspend or resume a partner: suspending revokes every token of its clients and people at once."""
    partner = get_partner(session, partner_id)
    if status not in set(PartnerStatus):
        raise ValidationError(f"status must be one of {', '.join(PartnerStatus)}")
    if partner.status == status:
        raise ConflictError(f"partner {partner.name!r} is already {status}")
    partner.status = status
    session.flush()
    if status == PartnerStatus.SUSPENDED:
        # Revoked, not only refused while suspended: resuming must not bring old tokens back.
        revoked = _revoke_tokens(session, partner_id=partner.id)
        auditlog.record(session, actor, "partner.suspend", f"partner/{partner.id}", {"tokens_revoked": revoked})
    else:
        auditlog.record(session, actor, "partner.resume", f"partner/{partner.id}")
    return partner


def _revoke_tokens(session: Session, *, client_id: str | None = None, partner_id: str | None = None) -> int:
    return revoke_tokens(session, utcnow(), client_id=client_id, partner_id=partner_id)


# --- clients ---------------------------------------------------------------------------------------------


def _check_scopes(partner: Partner, scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValidationError(f"unknown scopes: {', '.join(unknown)}")
    allowed = KIND_SCOPES[PartnerKind(partner.kind)]
    refused = sorted(set(scopes) - allowed)
    if refused:
        raise ValidationError(f"a {partner.kind} partner may not hold: {', '.join(refused)}")
    return sorted(set(scopes))


def parse_jwks(raw: str | dict[str, Any]) -> str:
    """Check a public JWKS (RFC 7517) and return it as canonical JSON; private keys are refused."""
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
            raise ValueError("a JWKS is an object with a non-empty 'keys' list")
        for key in data["keys"]:
            if not isinstance(key, dict) or any(k in key for k in ("d", "p", "q", "k")):
                raise ValueError("the JWKS holds private or symmetric keys; register public keys only")
        KeySet.import_key_set(data)  # type: ignore[arg-type]
        return canonical_json(data).decode()
    except (ValueError, TypeError, JoseError, FormatError) as e:
        raise ValidationError(f"invalid JWKS: {e}") from e


def create_client(
    session: Session,
    partner_id: str,
    name: str,
    scopes: list[str],
    *,
    hub_secret: bytes,
    actor: Actor,
    jwks: str | dict[str, Any] | None = None,
    default_scopes: list[str] | None = None,
) -> IssuedClient:
    """A new client of a partner: private_key_jwt when a JWKS is given, else a 256-bit secret shown once."""
    partner = get_partner(session, partner_id)
    granted = _check_scopes(partner, scopes)
    if not granted:
        raise ValidationError("a client needs at least one scope")
    defaults = granted if default_scopes is None else sorted(set(default_scopes))
    if not set(defaults) <= set(granted):
        raise ValidationError("default scopes must be among the client's scopes")
    client = OAuthClient(
        client_id=f"hfc_{secrets.token_hex(16)}",
        partner_id=partner.id,
        name=name.strip() or "client",
        scopes=" ".join(granted),
        default_scopes=" ".join(defaults),
        created_at=utcnow(),
    )
    plaintext: str | None = None
    if jwks is not None:
        client.auth_method = "private_key_jwt"
        client.jwks = parse_jwks(jwks)
    else:
        client.auth_method = "client_secret_basic"
        plaintext = secrets.token_urlsafe(32)  # 256 bits
        client.secret_digest = secret_digest(hub_secret, plaintext)
    session.add(client)
    session.flush()
    auditlog.record(
        session,
        actor,
        "client.create",
        f"client/{client.client_id}",
        {"partner": partner.id, "auth_method": client.auth_method, "scopes": granted},
    )
    return IssuedClient(client, plaintext)


def get_client(session: Session, client_id: str) -> OAuthClient:
    client = session.get(OAuthClient, client_id)
    if client is None:
        raise NotFoundError(f"no client {client_id!r}")
    return client


def rotate_client(
    session: Session,
    client_id: str,
    *,
    hub_secret: bytes,
    actor: Actor,
    jwks: str | dict[str, Any] | None = None,
) -> IssuedClient:
    """Replace a client's secret (or JWKS); the old one and every token issued with it stop working when this
    commits."""
    client = get_client(session, client_id)
    if client.revoked_at is not None:
        raise ConflictError(f"client {client_id} is revoked")
    plaintext: str | None = None
    if client.auth_method == "private_key_jwt":
        if jwks is None:
            raise ValidationError("a private_key_jwt client is rotated with a new JWKS")
        client.jwks = parse_jwks(jwks)
    else:
        if jwks is not None:
            raise ValidationError("a client_secret_basic client is rotated without a JWKS")
        plaintext = secrets.token_urlsafe(32)
        client.secret_digest = secret_digest(hub_secret, plaintext)
    client.rotated_at = utcnow()
    _end_tokens(session, client, actor, "client.rotate")
    return IssuedClient(client, plaintext)


def revoke_client(session: Session, client_id: str, actor: Actor) -> OAuthClient:
    """Revoke a client: it cannot authenticate, and tokens issued to it stop working at once."""
    client = get_client(session, client_id)
    if client.revoked_at is not None:
        raise ConflictError(f"client {client_id} is already revoked")
    client.revoked_at = utcnow()
    _end_tokens(session, client, actor, "client.revoke")
    return client


def _end_tokens(session: Session, client: OAuthClient, actor: Actor, action: str) -> None:
    """After a client's rotation or revocation: its tokens stop working, and one audit entry says how many."""
    session.flush()
    revoked = _revoke_tokens(session, client_id=client.client_id)
    subject = f"client/{client.client_id}"
    auditlog.record(session, actor, action, subject, {"partner": client.partner_id, "tokens_revoked": revoked})
