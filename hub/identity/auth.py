"""The resource side of OAuth: who is calling (`Principal`) and what they may do (`require_scope`).

Tenant isolation is decided here, once: the partner comes from the bearer token, never from the path or
the body. A protected request sets the tenant for row-level security in its own transaction
(`hub.rls.set_tenant`), and every service that serves a partner takes `current_principal().partner_id`.
Only bearer tokens are accepted on the API (machine tokens and personal tokens); console cookies are not,
so the API needs no CSRF protection.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flask import g, request
from flask_smorest import Blueprint
from werkzeug.exceptions import HTTPException

from hub import rls
from hub.db import utcnow
from hub.identity.models import SCOPES, OAuthClient, Partner, PartnerStatus, User
from hub.identity.tokens import find_token
from hub.transparency.auditlog import Actor
from hub.web import db

F = TypeVar("F", bound=Callable[..., Any])

# The OpenAPI security scheme name every protected operation refers to.
SECURITY_SCHEME = "oauth2"
REALM = "hashfed"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request: a partner's machine or one of its people."""

    partner_id: str
    partner_kind: str  # platform | intake | governance | regulator
    client_id: str | None  # OAuth client, or None for a person
    user_id: str | None  # staff user for personal tokens / console sessions
    scopes: frozenset[str]

    def actor(self) -> Actor:
        """The audit log's actor for what this principal does."""
        if self.user_id is not None:
            return Actor(type="user", partner=self.partner_id, user=self.user_id)
        return Actor(type="partner", partner=self.partner_id, client=self.client_id)


class OAuthHTTPError(HTTPException):
    """An RFC 6749/6750 error: flask-smorest's body plus `error`, and the WWW-Authenticate header."""

    def __init__(self, status: int, error: str | None, description: str, *, scope: str | None = None):
        super().__init__(description)
        self.code = status
        self.error = error
        self.scope = scope

    @property
    def oauth_body(self) -> dict[str, str]:
        body = {"error": self.error or "invalid_request", "error_description": self.description or ""}
        return body

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        if self.code in (401, 403):
            parts = [f'realm="{REALM}"']
            if self.error:
                parts.append(f'error="{self.error}"')
                parts.append(f'error_description="{self.description}"')
            if self.scope:
                parts.append(f'scope="{self.scope}"')
            headers.append(("WWW-Authenticate", "Bearer " + ", ".join(parts)))
        return headers


def is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def transport_is_secure() -> bool:
    """HTTPS (the scheme after ProxyFix), or plain HTTP from a loopback address (local tools, tests)."""
    return request.scheme == "https" or is_loopback(request.remote_addr)


def require_secure_transport() -> None:
    if not transport_is_secure():
        raise OAuthHTTPError(400, "invalid_request", "plain HTTP is refused: use HTTPS")


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    kind, _, value = header.partition(" ")
    if not header:
        raise OAuthHTTPError(401, None, "an access token is required")
    if kind.lower() != "bearer" or not value.strip() or " " in value.strip():
        raise OAuthHTTPError(401, "invalid_request", "use Authorization: Bearer <token>")
    return value.strip()


def authenticate(required: tuple[str, ...]) -> Principal:
    """The request's principal, after checking token, partner, client or user and scopes; sets the tenant."""
    require_secure_transport()
    token = _bearer()
    session = db()
    # The lookup itself runs as SYSTEM: the partner is not known until the token is found.
    rls.set_tenant(session, rls.SYSTEM)
    row = find_token(session, token)
    now = utcnow()
    invalid = OAuthHTTPError(401, "invalid_token", "the access token is invalid, expired or revoked")
    if row is None or not row.is_active(now):
        rls.set_tenant(session, None)
        raise invalid
    partner = session.get(Partner, row.partner_id)
    ok = partner is not None and partner.status == PartnerStatus.ACTIVE
    if ok and row.client_id is not None:
        client = session.get(OAuthClient, row.client_id)
        ok = client is not None and client.revoked_at is None and client.partner_id == row.partner_id
    if ok and row.user_id is not None:
        user = session.get(User, row.user_id)
        ok = user is not None and user.status == "active" and user.partner_id == row.partner_id
    if not ok or partner is None:
        rls.set_tenant(session, None)
        raise invalid
    rls.set_tenant(session, partner.id)
    principal = Principal(partner.id, partner.kind, row.client_id, row.user_id, row.scope_set)
    missing = [s for s in required if s not in principal.scopes]
    if missing:
        raise OAuthHTTPError(
            403, "insufficient_scope", f"this needs scope {' '.join(required)}", scope=" ".join(required)
        )
    return principal


def require_scope(*scopes: str) -> Callable[[F], F]:
    """Protect a view: a valid bearer token whose scopes include every listed scope.

    401 (with `WWW-Authenticate: Bearer ...`) without a token, or with an invalid, expired or revoked one,
    or one whose partner is suspended; 403 `insufficient_scope` when a listed scope is missing. Put it
    below `@blp.route` (it records the OpenAPI security requirement and the 401/403 responses).
    """
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scopes {unknown}")

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.hashfed_principal = authenticate(scopes)
            return view(*args, **kwargs)

        documented = Blueprint.doc(
            security=[{SECURITY_SCHEME: list(scopes)}],
            responses={
                "401": {"description": "no valid access token (RFC 6750)"},
                "403": {"description": "insufficient_scope"},
            },
        )(wrapper)
        documented._hashfed_scopes = frozenset(scopes)
        return cast(F, documented)

    return decorator


def current_principal() -> Principal:
    """The principal of the current protected request (inside a `require_scope` view)."""
    principal = g.get("hashfed_principal")
    if principal is None:
        raise RuntimeError("current_principal() called outside a require_scope view")
    return cast(Principal, principal)


def register_security_scheme(spec: Any, token_url: str) -> None:
    """Declare the OAuth 2.0 client credentials scheme in the OpenAPI document."""
    spec.components.security_scheme(
        SECURITY_SCHEME,
        {
            "type": "oauth2",
            "description": "Client credentials (private_key_jwt, client_secret_basic) or a personal token.",
            "flows": {"clientCredentials": {"tokenUrl": token_url, "scopes": {s: s for s in SCOPES}}},
        },
    )
