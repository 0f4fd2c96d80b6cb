"""OAuth 2.0: the client credentials grant with each client authentication, tokens on a protected route,
revocation, introspection, metadata, transport and rate limits."""

from __future__ import annotations

import base64
import time

import pytest
from flask_smorest import Blueprint
from sqlalchemy import func, select

from hub.app import create_app
from hub.identity.auth import current_principal, require_scope
from hub.identity.models import AccessToken, PartnerStatus
from hub.identity.tokens import token_digest
from hub.transparency.models import AuditEntry
from tests.hub import factories as f

TOKEN_URL = "http://127.0.0.1:8000/oauth/token"


def _probe_app(settings, database, session_factory, **changes):
    app = create_app(settings.replace(**changes), engine=database.engine, session_factory=session_factory)
    blp = Blueprint("probe", __name__)

    @blp.route("/v1/probe")
    @require_scope("feed:read")
    def probe():
        p = current_principal()
        return {"partner": p.partner_id, "client": p.client_id, "scopes": sorted(p.scopes)}

    @blp.route("/v1/probe-audit")
    @require_scope("audit:read")
    def probe_audit():
        return {"ok": True}

    app.register_blueprint(blp)
    return app


@pytest.fixture
def papp(settings, database, session_factory):
    return _probe_app(settings, database, session_factory)


@pytest.fixture
def pc(papp):
    return papp.test_client()


def _basic(client_id, secret):
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def _jwt_form(c, audience=TOKEN_URL, **claims):
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": c.assertion(audience, **claims),
    }


def _audits(session, action):
    f.as_system(session)
    return [e for (e,) in session.execute(select(AuditEntry.entry)) if f'"action":"{action}"'.encode() in e]


def test_client_secret_basic_issues_a_token_that_works(pc, session, settings):
    owner = f.partner(session)
    c = f.client(session, owner, scopes=["feed:read", "match"], hub_secret=f.hub_secret(settings))
    r = pc.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=_basic(c.client_id, c.secret)
    )
    assert r.status_code == 200, r.json
    body = r.json
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    assert set(body["scope"].split()) == {"feed:read", "match"}
    assert r.headers["Cache-Control"] == "no-store"
    f.as_system(session)
    stored = session.get(AccessToken, token_digest(body["access_token"]))
    assert stored is not None and stored.partner_id == owner.id
    assert (
        session.scalar(
            select(func.count()).select_from(AccessToken).where(AccessToken.digest == body["access_token"])
        )
        == 0
    )  # only the digest is stored
    assert _audits(session, "token.issue")
    r = pc.get("/v1/probe", headers=f.auth(body["access_token"]))
    assert r.status_code == 200
    assert r.json == {"partner": owner.id, "client": c.client_id, "scopes": ["feed:read", "match"]}


def test_token_ttl_follows_the_settings(settings, database, session_factory, session):
    app = _probe_app(settings, database, session_factory, token_ttl_s=42)
    owner = f.partner(session)
    c = f.client(session, owner, hub_secret=f.hub_secret(settings))
    r = app.test_client().post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=_basic(c.client_id, c.secret)
    )
    assert r.json["expires_in"] == 42


@pytest.mark.parametrize(
    "case",
    ["wrong secret", "unknown client", "revoked client", "suspended partner", "jwt client with a secret"],
)
def test_client_secret_basic_refusals(pc, session, settings, case):
    owner = f.partner(session)
    c = f.client(session, owner, hub_secret=f.hub_secret(settings))
    client_id, secret = c.client_id, c.secret
    if case == "wrong secret":
        secret = "x" * 43
    elif case == "unknown client":
        client_id = "hfc_nobody"
    elif case == "revoked client":
        from hub.identity import tenants
        from hub.transparency.auditlog import Actor

        tenants.revoke_client(session, c.client_id, Actor.operator())
    elif case == "suspended partner":
        from hub.identity import tenants
        from hub.transparency.auditlog import Actor

        tenants.set_partner_status(session, owner.id, PartnerStatus.SUSPENDED, Actor.operator())
    else:
        client_id = f.client(session, owner, jwks=True).client_id
    r = pc.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=_basic(client_id, secret))
    assert r.status_code == 401
    assert r.json["error"] == "invalid_client"
    assert "access_token" not in r.json


def test_failed_authentication_is_audited_once_a_minute(pc, session, settings):
    owner = f.partner(session)
    c = f.client(session, owner, hub_secret=f.hub_secret(settings))
    for _ in range(3):
        r = pc.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, headers=_basic(c.client_id, "bad")
        )
        assert r.status_code == 401
    assert len(_audits(session, "client.auth_failed")) == 1


def test_private_key_jwt_issues_a_token(pc, session):
    owner = f.partner(session)
    c = f.client(
        session, owner, jwks=True, scopes=["feed:read", "reports:write"], default_scopes=["feed:read"]
    )
    r = pc.post("/oauth/token", data=_jwt_form(c))
    assert r.status_code == 200, r.json
    assert r.json["scope"] == "feed:read"  # no scope asked: the client's default scopes
    assert pc.get("/v1/probe", headers=f.auth(r.json["access_token"])).status_code == 200
    r = pc.post("/oauth/token", data={**_jwt_form(c), "scope": "reports:write"})
    assert r.status_code == 200 and r.json["scope"] == "reports:write"


@pytest.mark.parametrize(
    "case",
    [
        "replayed jti",
        "wrong audience",
        "wrong key",
        "expired assertion",
        "no jti",
        "issuer differs",
        "assertion lives too long",
        "secret client with a jwt",
    ],
)
def test_private_key_jwt_refusals(pc, session, settings, case):
    owner = f.partner(session)
    c = f.client(session, owner, jwks=True)
    form = _jwt_form(c)
    if case == "replayed jti":
        assert pc.post("/oauth/token", data=form).status_code == 200
    elif case == "wrong audience":
        form = _jwt_form(c, audience="https://elsewhere.example/oauth/token")
    elif case == "wrong key":
        form = _jwt_form(c, key=f.new_key())
    elif case == "expired assertion":
        form = _jwt_form(c, exp=int(time.time()) - 600, iat=int(time.time()) - 900)
    elif case == "no jti":
        form = _jwt_form(c, jti=None)
    elif case == "issuer differs":
        form = _jwt_form(c, iss="someone-else")
    elif case == "assertion lives too long":
        form = _jwt_form(c, exp=int(time.time()) + 86400)
    else:
        other = f.client(session, owner, hub_secret=f.hub_secret(settings))
        other.key = c.key
        form = _jwt_form(other)
    r = pc.post("/oauth/token", data=form)
    assert r.status_code in (400, 401), r.json
    assert r.json["error"] == "invalid_client"


def test_a_scope_not_granted_is_refused(pc, session):
    owner = f.partner(session)
    c = f.client(session, owner, jwks=True, scopes=["feed:read"])
    r = pc.post("/oauth/token", data={**_jwt_form(c), "scope": "feed:read hashes:write"})
    assert r.status_code == 400 and r.json["error"] == "invalid_scope"
    r = pc.post("/oauth/token", data={**_jwt_form(c), "scope": "no-such-scope"})
    assert r.status_code == 400 and r.json["error"] == "invalid_scope"


def test_unsupported_grant_type(pc, session):
    c = f.client(session, f.partner(session), jwks=True)
    r = pc.post("/oauth/token", data={**_jwt_form(c), "grant_type": "password"})
    assert r.status_code == 400 and r.json["error"] == "unsupported_grant_type"


@pytest.mark.parametrize("case", ["no token", "unknown token", "expired token", "malformed header"])
def test_protected_route_refuses_without_a_valid_token(pc, session, case):
    owner = f.partner(session)
    headers = {}
    if case == "unknown token":
        headers = f.auth("not-a-token")
    elif case == "expired token":
        headers = f.auth(f.token(session, owner, ["feed:read"], ttl_s=-1))
    elif case == "malformed header":
        headers = {"Authorization": "Token abc"}
    r = pc.get("/v1/probe", headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="hashfed"')
    assert r.json["code"] == 401
    if case != "no token":
        assert 'error="invalid_' in r.headers["WWW-Authenticate"]


def test_insufficient_scope_is_403(pc, session):
    value = f.token(session, f.partner(session), ["feed:read"])
    r = pc.get("/v1/probe-audit", headers=f.auth(value))
    assert r.status_code == 403
    assert r.json["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    assert 'scope="audit:read"' in r.headers["WWW-Authenticate"]


def test_suspending_a_partner_stops_its_tokens_at_once(pc, session):
    from hub.identity import tenants
    from hub.transparency.auditlog import Actor

    owner = f.partner(session)
    value = f.token(session, owner, ["feed:read"])
    assert pc.get("/v1/probe", headers=f.auth(value)).status_code == 200
    f.as_system(session)
    tenants.set_partner_status(session, owner.id, PartnerStatus.SUSPENDED, Actor.operator())
    assert pc.get("/v1/probe", headers=f.auth(value)).status_code == 401
    f.as_system(session)
    tenants.set_partner_status(session, owner.id, PartnerStatus.ACTIVE, Actor.operator())
    # Suspension revoked the token: resuming does not bring it back (tests/hub/test_revocation.py).
    assert pc.get("/v1/probe", headers=f.auth(value)).status_code == 401


def test_revoking_a_client_stops_its_tokens(pc, session, settings):
    from hub.identity import tenants
    from hub.transparency.auditlog import Actor

    owner = f.partner(session)
    c = f.client(session, owner)
    value = f.token(session, owner, ["feed:read"], client_row=c.row)
    f.as_system(session)
    tenants.revoke_client(session, c.client_id, Actor.operator())
    assert pc.get("/v1/probe", headers=f.auth(value)).status_code == 401


def test_revocation_and_introspection(pc, session):
    owner = f.partner(session)
    c = f.client(session, owner, jwks=True)
    value = pc.post("/oauth/token", data=_jwt_form(c)).json["access_token"]
    r = pc.post("/oauth/introspect", data={**_jwt_form(c), "token": value})
    assert r.status_code == 200 and r.json["active"] is True and r.json["client_id"] == c.client_id
    # Another partner's client learns nothing about this token and cannot revoke it.
    stranger = f.client(session, f.partner(session), jwks=True)
    r = pc.post("/oauth/introspect", data={**_jwt_form(stranger), "token": value})
    assert r.json == {"active": False}
    assert pc.post("/oauth/revoke", data={**_jwt_form(stranger), "token": value}).status_code == 200
    assert pc.get("/v1/probe", headers=f.auth(value)).status_code == 200
    # Its own client revokes it.
    assert pc.post("/oauth/revoke", data={**_jwt_form(c), "token": value}).status_code == 200
    assert pc.get("/v1/probe", headers=f.auth(value)).status_code == 401
    assert pc.post("/oauth/introspect", data={**_jwt_form(c), "token": value}).json == {"active": False}


def test_metadata_lists_what_is_supported(pc):
    r = pc.get("/.well-known/oauth-authorization-server")
    assert r.status_code == 200
    m = r.json
    assert m["issuer"] == "http://127.0.0.1:8000"
    assert m["token_endpoint"] == TOKEN_URL
    assert m["grant_types_supported"] == ["client_credentials"]
    assert m["token_endpoint_auth_methods_supported"] == ["private_key_jwt", "client_secret_basic"]
    assert "governance" in m["scopes_supported"]
    assert m["revocation_endpoint"].endswith("/oauth/revoke")
    assert m["introspection_endpoint"].endswith("/oauth/introspect")


def test_plain_http_from_a_remote_address_is_refused(pc, session, settings):
    c = f.client(session, f.partner(session), hub_secret=f.hub_secret(settings))
    remote = {"REMOTE_ADDR": "203.0.113.5"}
    r = pc.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=_basic(c.client_id, c.secret),
        environ_base=remote,
    )
    assert r.status_code == 400
    assert r.json["error"] == "invalid_request" and "HTTPS" in r.json["error_description"]
    # Host: localhost does not help: the peer address decides.
    r = pc.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={**_basic(c.client_id, c.secret), "Host": "localhost"},
        environ_base=remote,
    )
    assert r.status_code == 400
    value = f.token(session, f.partner(session), ["feed:read"])
    assert pc.get("/v1/probe", headers=f.auth(value), environ_base=remote).status_code == 400
    # Over HTTPS the same remote address is served.
    r = pc.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=_basic(c.client_id, c.secret),
        environ_base=remote,
        base_url="https://hub.example.org",
    )
    assert r.status_code == 200, r.json


def test_token_endpoint_rate_limit_answers_429_with_retry_after(settings, database, session_factory, session):
    app = _probe_app(settings, database, session_factory, token_rate_limit="3/minute")
    c = f.client(session, f.partner(session), hub_secret=f.hub_secret(settings))
    client = app.test_client()
    codes = [
        client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, headers=_basic(c.client_id, c.secret)
        ).status_code
        for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    r = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=_basic(c.client_id, c.secret)
    )
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 0
    assert r.json["code"] == 429


def test_token_rate_limit_counts_in_redis_across_app_processes(settings, database, session_factory, session):
    """Two app instances (as two gunicorn workers would be) share one Redis counter."""
    import secrets as _secrets

    import redis

    url = "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(url).ping()
    except redis.exceptions.ConnectionError:
        import os

        import pytest

        if os.environ.get("CI") == "true":
            pytest.fail("Redis is not running at 127.0.0.1:6379 (.ci/run starts it)")
        pytest.skip("Redis is not running at 127.0.0.1:6379")
    # Counters are keyed by client id, and the client is new on every run: earlier runs don't count.
    limit = "6/minute"
    first = _probe_app(settings, database, session_factory, token_rate_limit=limit, redis_url=url).test_client()
    second = _probe_app(settings, database, session_factory, token_rate_limit=limit, redis_url=url).test_client()
    c = f.client(session, f.partner(session, name=f"redis-{_secrets.token_hex(4)}"), hub_secret=f.hub_secret(settings))
    body = {"grant_type": "client_credentials"}
    codes = [app.post("/oauth/token", data=body, headers=_basic(c.client_id, c.secret)).status_code
             for app in (first, second, first, second, first, second, first)]
    assert codes == [200] * 6 + [429]
