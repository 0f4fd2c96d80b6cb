"""OAuth 2.0 for machines: the client credentials grant, revocation, introspection and metadata.

authlib's AuthorizationServer does the protocol; this module supplies its storage (clients, opaque access
tokens stored as SHA-256 digests, seen `jti`s in the database so a replay is refused across processes),
the transport rule (HTTPS, or plain HTTP from a loopback address only) and the audit entries.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import unquote

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Payload, FlaskOAuth2Request
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Request,
    TokenMixin,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Request
from flask import request as flask_request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub import rls
from hub.config import Settings
from hub.db import utcnow
from hub.identity.models import AUTH_METHODS, SCOPES, AccessToken, OAuthClient, Partner, PartnerStatus, UsedJti
from hub.identity.tenants import check_secret
from hub.identity.tokens import find_token, new_token_string, store_token
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor
from hub.transparency.keys import ensure_hub_secret
from hub.web import db, settings

log = logging.getLogger(__name__)

# How long a seen client-assertion `jti` is kept: longer than any assertion we accept may live.
JTI_RETENTION = timedelta(hours=1)
# Longest lifetime (exp - now) of a client assertion the hub accepts, in seconds.
MAX_ASSERTION_LIFETIME_S = 3600  # authlib's own client signs for an hour


# --- the authorization server (authlib) ------------------------------------------------------------------

# Algorithms a client assertion may use: asymmetric only (a JWKS never holds a shared secret).
ASSERTION_ALGORITHMS = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
]
# A failed authentication of one client is audited at most this often.
FAILURE_AUDIT_INTERVAL = timedelta(minutes=1)
# Every failed client authentication gets these words: an unknown client id and a wrong secret (or key) look
# the same, so the answer does not tell which client ids exist.
CLIENT_AUTH_FAILED = "client authentication failed"
# Longer than any client id the hub issues (`hfc_` and 32 hex digits).
MAX_CLIENT_ID = 64


def is_client_id(value: object) -> bool:
    """Whether `value` could name a client: 1 to 64 printable ASCII characters (no NUL, no surrogate).

    Anything else is no client, answered before it reaches a query (PostgreSQL refuses NUL in text,
    and a lone surrogate cannot be encoded for any database).
    """
    return isinstance(value, str) and 0 < len(value) <= MAX_CLIENT_ID and value.isascii() and value.isprintable()


class _UnsupportedTokenType(OAuth2Error):
    """A token type hint for a type the hub does not issue: 400 (RFC 7009 2.2.1; authlib's own is a 401)."""

    error = "unsupported_token_type"
    status_code = 400


def _check_token_params(request: Any) -> None:
    """authlib's `check_params` (a token is required; the hint must be a type we hold), with the 400."""
    if "token" not in request.form:
        raise InvalidRequestError(description="token is required")
    hint = request.form.get("token_type_hint")
    if hint and hint != "access_token":
        raise _UnsupportedTokenType(description="only access tokens are issued here")


class _Client(ClientMixin):
    """authlib's view of an `OAuthClient` row."""

    def __init__(self, row: OAuthClient, hub_secret: bytes) -> None:
        self.row = row
        self.hub_secret = hub_secret

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return self.row.default_scopes
        return " ".join(s for s in scope_to_list(scope) or [] if s in self.row.scope_set)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return check_secret(self.hub_secret, self.row, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return self.row.revoked_at is None and method == self.row.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


class _Token(TokenMixin):
    """authlib's view of an `AccessToken` row."""

    def __init__(self, row: AccessToken) -> None:
        self.row = row

    def check_client(self, client: _Client) -> bool:
        return self.row.partner_id == client.row.partner_id

    def get_scope(self) -> str:
        return self.row.scopes

    def get_expires_in(self) -> int:
        return int((self.row.expires_at - self.row.issued_at).total_seconds())

    def is_expired(self) -> bool:
        return self.row.expires_at <= utcnow()

    def is_revoked(self) -> bool:
        return self.row.revoked_at is not None


class _HubOAuth2Request(FlaskOAuth2Request):
    """authlib's request; the transport was checked by `hub.identity.auth.require_secure_transport` already.

    authlib decides "secure" from the URL's host, which the client controls (Host: localhost); the hub
    decides from the scheme after ProxyFix and the peer address instead, then hands authlib an https URL.
    """

    def __init__(self, req: Request) -> None:
        OAuth2Request.__init__(self, method=req.method, uri=_as_https(req.url), headers=req.headers)
        self._request = req
        self.payload = FlaskOAuth2Payload(req)


def _as_https(url: str) -> str:
    return "https" + url[4:] if url.startswith("http:") else url


class _PrivateKeyJWT(JWTBearerClientAssertion):
    """RFC 7523 client authentication; seen `jti`s live in the database, so replays fail across processes."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, audience: str) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.audience = audience

    def get_audiences(self) -> list[str]:
        return [self.audience]

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGORITHMS)
        except (JoseError, ValueError) as e:
            raise InvalidClientError(description="the client assertion's signature does not verify") from e
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: Any) -> None:
        exp = claims.get("exp")
        if isinstance(exp, int) and exp - utcnow().timestamp() > MAX_ASSERTION_LIFETIME_S + self.leeway:
            limit = MAX_ASSERTION_LIFETIME_S
            raise InvalidClientError(description=f"a client assertion lives at most {limit}s")
        super().verify_claims(claims)

    def validate_jti(self, claims: Any, jti: Any) -> bool:
        if not isinstance(jti, str) or not 0 < len(jti) <= 255:
            return False
        session = db()
        expires = datetime.fromtimestamp(int(claims["exp"]), UTC) + timedelta(seconds=self.leeway)
        try:
            with session.begin_nested():
                session.add(UsedJti(client_id=str(claims["sub"]), jti=jti, expires_at=expires))
        except IntegrityError:
            return False
        return True

    def resolve_client_public_key(self, client: _Client) -> KeySet:
        if client.row.auth_method != self.CLIENT_AUTH_METHOD or not client.row.jwks:
            raise InvalidClientError(description="this client does not authenticate with private_key_jwt")
        return KeySet.import_key_set(json.loads(client.row.jwks))


class _Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)
    SUPPORTED_TOKEN_TYPES = ("access_token",)

    def authenticate_token(self, request: Any, client: _Client) -> _Token | None:
        _check_token_params(request)
        return _lookup(request.form["token"], client)

    def revoke_token(self, token: _Token, request: Any) -> None:
        if token.row.revoked_at is None:
            token.row.revoked_at = utcnow()
            db().flush()
            client: _Client = request.client
            auditlog.record(
                db(), _client_actor(client.row), "token.revoke", f"client/{client.row.client_id}",
                {"token": token.row.digest[:16]},
            )


class _Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)
    SUPPORTED_TOKEN_TYPES = ("access_token",)

    def authenticate_token(self, request: Any, client: _Client) -> _Token | None:
        _check_token_params(request)
        return _lookup(request.form["token"], client)

    def check_permission(self, token: _Token, client: _Client, request: Any) -> bool:
        return token.row.partner_id == client.row.partner_id

    def query_token(self, token_string: str, token_type_hint: str | None) -> None:
        raise NotImplementedError  # authenticate_token is overridden

    def introspect_token(self, token: _Token) -> dict[str, Any]:
        row = token.row
        return {
            "active": True,
            "scope": row.scopes,
            "client_id": row.client_id,
            "token_type": "Bearer",
            "sub": row.client_id or row.user_id,
            "iat": int(row.issued_at.timestamp()),
            "exp": int(row.expires_at.timestamp()),
            "iss": settings().base_url,
        }


def _lookup(token: str, client: _Client) -> _Token | None:
    """A token of the calling client's partner only; another partner's token looks like no token."""
    row = find_token(db(), token)
    if row is None or row.partner_id != client.row.partner_id:
        return None
    return _Token(row)


def _client_actor(row: OAuthClient) -> Actor:
    return Actor(type="partner", partner=row.partner_id, client=row.client_id)


class _ClientCredentials(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = set(scope_to_list(self.request.payload.scope) or [])
        client: _Client = self.request.client
        refused = sorted(requested - client.row.scope_set)
        if refused:
            raise InvalidScopeError(description=f"scope not granted to this client: {' '.join(refused)}")


class HubAuthorizationServer(AuthorizationServer):
    """authlib's server wired to the hub's storage and transport rule."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.scopes_supported = list(SCOPES)
        self._hub_secret: bytes | None = None
        self.hub_settings = settings
        self._query_client = self._find_client
        self._save_token = self._store
        ttl = settings.token_ttl_s
        self.register_token_generator(
            "default", BearerTokenGenerator(lambda **_: new_token_string(), None, lambda client, grant: ttl)
        )
        self.register_client_auth_method("private_key_jwt", _PrivateKeyJWT(settings.token_endpoint))
        self.register_grant(_ClientCredentials)
        self.register_endpoint(_Revocation)
        self.register_endpoint(_Introspection)

    @property
    def hub_secret(self) -> bytes:
        """The hub secret (hub/transparency/keys.py), read on first use and created 0600 if missing."""
        if self._hub_secret is None:
            self._hub_secret = ensure_hub_secret(self.hub_settings.keys_path)
        return self._hub_secret

    def _find_client(self, client_id: str) -> _Client | None:
        session = db()
        if not is_client_id(client_id):
            return None
        rls.set_tenant(session, rls.SYSTEM)  # the partner is not known until the client is
        row = session.get(OAuthClient, client_id)
        if row is None or row.revoked_at is not None:
            return None
        partner = session.get(Partner, row.partner_id)
        if partner is None or partner.status != PartnerStatus.ACTIVE:
            return None
        return _Client(row, self.hub_secret)

    def _store(self, token: dict[str, Any], request: Any) -> None:
        client: _Client = request.client
        scopes = frozenset(str(token.get("scope", "")).split())
        store_token(
            db(), token["access_token"], partner_id=client.row.partner_id, scopes=scopes,
            ttl_s=int(token["expires_in"]), client_id=client.row.client_id,
        )
        auditlog.record(
            db(), _client_actor(client.row), "token.issue", f"client/{client.row.client_id}",
            {"scopes": sorted(scopes), "expires_in": int(token["expires_in"])},
        )

    def handle_error_response(self, request: Any, error: Any) -> Any:
        if isinstance(error, InvalidClientError):
            error.description = CLIENT_AUTH_FAILED
        return super().handle_error_response(request, error)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return _HubOAuth2Request(flask_request)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        if name == "after_authenticate_client":
            client: _Client = kwargs["client"]
            rls.set_tenant(db(), client.row.partner_id)
        super().send_signal(name, *args, **kwargs)

    def metadata(self) -> dict[str, Any]:
        """RFC 8414 metadata: only what this server really supports."""
        base = self.hub_settings.base_url.rstrip("/")
        methods = list(AUTH_METHODS)
        return {
            "issuer": base,
            "token_endpoint": self.hub_settings.token_endpoint,
            "revocation_endpoint": f"{base}/oauth/revoke",
            "introspection_endpoint": f"{base}/oauth/introspect",
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": [],
            "scopes_supported": list(SCOPES),
            "token_endpoint_auth_methods_supported": methods,
            "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
            "revocation_endpoint_auth_methods_supported": methods,
            "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
            "introspection_endpoint_auth_methods_supported": methods,
            "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
            "service_documentation": f"{base}/docs",
        }


def claimed_client_id() -> str | None:
    """The client id a token request claims (Basic user, or the assertion's unverified `sub`), if it could
    be one (`is_client_id`); for logs and rate limits."""
    claimed: object = None
    auth = flask_request.authorization
    if auth is not None and auth.type == "basic" and auth.username:
        claimed = unquote(auth.username)
    elif assertion := flask_request.form.get("client_assertion"):
        try:
            payload = assertion.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            claimed = claims.get("sub") if isinstance(claims, dict) else None
        except (ValueError, IndexError, RecursionError):
            return None
    else:
        claimed = flask_request.form.get("client_id")
    return claimed if is_client_id(claimed) else None


def audit_failed_authentication(
    session: Session, client_id: str | None, endpoint: str, now: datetime
) -> bool:
    """Audit a failed client authentication, at most once a minute per known client. True if recorded.

    Unknown client ids are only logged by the application: anyone can invent them, so they would let
    anyone fill the audit log.
    """
    if not is_client_id(client_id):
        log.info("failed client authentication at %s for an unknown client", endpoint)
        return False
    rls.set_tenant(session, rls.SYSTEM)
    row = session.get(OAuthClient, client_id, with_for_update=True)
    if row is None:
        log.info("failed client authentication at %s for an unknown client", endpoint)
        return False
    if row.failure_logged_at is not None and now - row.failure_logged_at < FAILURE_AUDIT_INTERVAL:
        return False
    row.failure_logged_at = now
    session.flush()
    auditlog.record(
        session, Actor.system("oauth"), "client.auth_failed", f"client/{client_id}",
        {"partner": row.partner_id, "endpoint": endpoint}, now=now,
    )
    return True


