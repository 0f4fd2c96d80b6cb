"""Identity's HTTP endpoints: the OAuth 2.0 token, revocation, introspection and metadata endpoints, and the
staff console's login, logout and personal tokens."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError
from flask import Flask, Response, jsonify, request
from flask_smorest import Blueprint

from hub import rls
from hub.db import utcnow
from hub.errors import BadRequestError
from hub.identity import ratelimit
from hub.identity.auth import register_security_scheme, require_secure_transport
from hub.identity.oauth import HubAuthorizationServer, audit_failed_authentication, claimed_client_id
from hub.identity.people import (
    COOKIE,
    SESSION_TTL,
    LoginError,
    create_personal_token,
    is_text,
    login,
    logout,
    session_user,
)
from hub.web import commit_despite_error, db, state

# --- OAuth 2.0 ---------------------------------------------------------------------------------------------


oauth_blp = Blueprint("oauth", __name__, description="OAuth 2.0: client credentials, revocation, introspection")


def server() -> HubAuthorizationServer:
    srv: HubAuthorizationServer = state().services["oauth_server"]
    return srv


def _basicis_text() -> bool:
    """Whether a Basic credential, if any, is UTF-8: authlib decodes it unguarded (RFC 7617 2.1)."""
    kind, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    if kind.lower() != "basic":
        return True
    try:
        base64.b64decode(value.strip()).decode("utf-8")
    except binascii.Error:
        return True  # authlib reads this as no credential
    except UnicodeDecodeError:
        return False
    return True


def _parameter_problem() -> str | None:
    """Why the request's parameters are refused, if they are: each is sent once, in the form body only.

    RFC 6749 3.1 and 3.2 (a parameter MUST NOT be included more than once; the token request is a POST with a
    form body), RFC 7009 2.1 and RFC 7662 2.1 likewise; a token in a query string would also reach access logs.
    """
    if request.args:
        return "parameters go in the form body, not the query string"
    repeated = [k for k, values in request.form.lists() if len(values) > 1]
    if repeated:
        # Named back only when it looks like a parameter name: the client chose these strings.
        named = sorted(k for k in repeated if k.isascii() and k.replace("_", "").isalpha() and len(k) <= 40)
        return "a parameter may be sent once only" + (f": {', '.join(named)}" if named else "")
    return None


def _endpoint(name: str) -> Response:
    require_secure_transport()
    srv = server()
    problem = _parameter_problem()
    if problem is not None:
        response = srv.handle_error_response(None, InvalidRequestError(description=problem))
    elif not _basicis_text():
        response = srv.handle_error_response(None, InvalidClientError(status_code=401))
    elif name == "token":
        response = srv.create_token_response()
    else:
        response = srv.create_endpoint_response(name)
    if response.status_code in (400, 401):
        body = response.get_json(silent=True) or {}
        if body.get("error") == "invalid_client":
            if audit_failed_authentication(db(), claimed_client_id(), name, utcnow()):
                commit_despite_error()
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


_FORM = {"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}}


@oauth_blp.route("/oauth/token", methods=["POST"])
@oauth_blp.doc(**_FORM, security=[])
@oauth_blp.response(200, description="an access token (RFC 6749 §5.1)")
@oauth_blp.alt_response(400, description="RFC 6749 error body")
@oauth_blp.alt_response(401, description="invalid_client")
@oauth_blp.alt_response(429, description="rate limited; see Retry-After")
def token() -> Response:
    """Client credentials grant; clients authenticate with `private_key_jwt` or `client_secret_basic`."""
    return _endpoint("token")


@oauth_blp.route("/oauth/revoke", methods=["POST"])
@oauth_blp.doc(**_FORM, security=[])
@oauth_blp.response(200, description="revoked, or nothing to revoke (RFC 7009)")
@oauth_blp.alt_response(401, description="invalid_client")
@oauth_blp.alt_response(429, description="rate limited; see Retry-After")
def revoke() -> Response:
    """RFC 7009 token revocation; a client may revoke its own partner's tokens only."""
    return _endpoint("revocation")


@oauth_blp.route("/oauth/introspect", methods=["POST"])
@oauth_blp.doc(**_FORM, security=[])
@oauth_blp.response(200, description="RFC 7662 introspection response")
@oauth_blp.alt_response(401, description="invalid_client")
@oauth_blp.alt_response(429, description="rate limited; see Retry-After")
def introspect() -> Response:
    """RFC 7662 introspection; another partner's token is reported as `{"active": false}`."""
    return _endpoint("introspection")


@oauth_blp.route("/.well-known/oauth-authorization-server")
@oauth_blp.response(200, description="RFC 8414 authorization server metadata")
def metadata() -> Response:
    """What this authorization server supports (RFC 8414)."""
    response = jsonify(server().metadata())
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


# --- staff console -----------------------------------------------------------------------------------------

console_blp = Blueprint("console", __name__, description="Staff console: login and personal tokens")


def _json_body() -> dict[str, object]:
    # Requiring JSON is part of the CSRF defence: a cross-site form cannot send application/json.
    if not request.is_json:
        raise BadRequestError("send application/json")
    try:
        body = request.get_json(silent=True)
    except RecursionError as e:  # the parser's recursion limit, reached by nesting: no body we take
        raise BadRequestError("the body is a JSON object") from e
    if not isinstance(body, dict):
        raise BadRequestError("the body is a JSON object")
    return body


@console_blp.route("/console/login", methods=["POST"])
@console_blp.doc(security=[])
@console_blp.response(200, description="logged in; the session cookie is set (HttpOnly, Secure, SameSite=Strict)")
@console_blp.alt_response(401, description="login failed")
def console_login() -> Response:
    """Password login for staff; opens a server-side console session."""
    require_secure_transport()
    body = _json_body()
    email, password = body.get("email"), body.get("password")
    if not is_text(email) or not is_text(password):
        raise BadRequestError("email and password are strings of text")
    try:
        user, cookie = login(db(), email, password, utcnow())
    except LoginError as e:
        if e.audited:
            commit_despite_error()
        raise
    response = jsonify({"user": user.id, "partner": user.partner_id})
    response.set_cookie(COOKIE, cookie, max_age=int(SESSION_TTL.total_seconds()), httponly=True, secure=True,
                        samesite="Strict", path="/")
    return response


@console_blp.route("/console/logout", methods=["POST"])
@console_blp.doc(security=[])
@console_blp.response(204)
def console_logout() -> Response:
    """Close the console session."""
    cookie = request.cookies.get(COOKIE)
    if cookie:
        rls.set_tenant(db(), rls.SYSTEM)
        logout(db(), cookie, utcnow())
    response = Response(status=204)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return response


@console_blp.route("/console/tokens", methods=["POST"])
@console_blp.doc(security=[])
@console_blp.response(201, description="a personal token, shown once")
@console_blp.alt_response(401, description="no console session")
@console_blp.alt_response(422, description="a scope the user's partner kind may not hold")
def console_create_token() -> tuple[dict[str, object], int]:
    """A personal bearer token for API use, created by a logged-in user."""
    require_secure_transport()
    body = _json_body()
    user = session_user(db(), request.cookies.get(COOKIE), utcnow())
    if user is None:
        raise LoginError("log in first")
    scopes = body.get("scopes")
    if scopes is not None and (not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes)):
        raise BadRequestError("scopes is a list of strings")
    name = body.get("name")
    row, token = create_personal_token(db(), user, name if isinstance(name, str) else "", scopes, utcnow())
    return {
        "access_token": token,
        "token_type": "Bearer",
        "scope": row.scopes,
        "expires_at": row.expires_at.isoformat(),
    }, 201


def init_app(app: Flask, api: Any) -> HubAuthorizationServer:
    """Create the authorization server for `app`; register both blueprints, their rate limits and the security
    scheme."""
    hub = state(app)
    srv = HubAuthorizationServer(hub.settings)
    hub.services["oauth_server"] = srv
    api.register_blueprint(oauth_blp)
    api.register_blueprint(console_blp)
    for name in ("token", "introspect", "revoke"):
        ratelimit.limit_oauth_endpoint(app, f"oauth.{name}", name, claimed_client_id)
    ratelimit.limit_login_endpoint(app, "console.console_login")
    register_security_scheme(api.spec, hub.settings.token_endpoint)
    return srv
