"""Secrets never reach a log: client secrets, assertions, access tokens, passwords, session cookies, personal tokens.

Every log record the hub writes at DEBUG while a client and a person go through their whole life (token,
use, introspection, revocation, wrong secrets, login, wrong password, personal token, logout) is searched for
each secret; a security header check rides along, since it is the same traffic.
"""

from __future__ import annotations

import base64
import logging

from hub.app import create_app
from hub.identity import people
from hub.transparency.auditlog import Actor
from tests.hub import factories as f

PASSWORD = "a staff password nobody logs"


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def test_no_secret_or_token_is_ever_logged(settings, database, session_factory, session, caplog):
    caplog.set_level(logging.DEBUG)
    app = create_app(settings, engine=database.engine, session_factory=session_factory)
    c = app.test_client()
    platform = f.partner(session)
    client = f.client(session, platform, hub_secret=f.hub_secret(settings))
    gov = f.partner(session, kind="governance")
    people.create_user(session, gov.id, "log@example.org", PASSWORD, Actor.operator())
    session.commit()

    issued = c.post("/oauth/token", data={"grant_type": "client_credentials"},
                    headers=_basic(client.client_id, client.secret))
    assert issued.status_code == 200
    token = issued.json["access_token"]
    assert issued.headers["Cache-Control"] == "no-store"
    assert c.get("/v1/collections", headers=f.auth(token)).status_code == 200
    c.post("/oauth/introspect", data={"token": token}, headers=_basic(client.client_id, client.secret))
    wrong = client.secret[:-4] + "abcd"
    assert c.post("/oauth/token", data={"grant_type": "client_credentials"},
                  headers=_basic(client.client_id, wrong)).status_code == 401
    assert c.get("/v1/collections", headers=f.auth(token + "x")).status_code == 401
    stranger = c.post("/oauth/token", data={"grant_type": "client_credentials"},
                      headers=_basic("no-such-client", client.secret))
    assert stranger.status_code == 401  # logged (an unknown client has no audit trail), with no secret
    c.post("/oauth/revoke", data={"token": token}, headers=_basic(client.client_id, client.secret))

    assert c.post("/console/login", json={"email": "log@example.org", "password": PASSWORD + "!"}).status_code == 401
    login = c.post("/console/login", json={"email": "log@example.org", "password": PASSWORD})
    assert login.status_code == 200
    cookie = login.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    personal = c.post("/console/tokens", json={"name": "laptop", "scopes": ["audit:read"]})
    assert personal.status_code == 201
    c.post("/console/logout")

    secrets = {
        "client secret": client.secret,
        "wrong secret": wrong,
        "access token": token,
        "password": PASSWORD,
        "session cookie": cookie,
        "personal token": personal.json["access_token"],
    }
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    assert caplog.records, "nothing was logged: the check would prove nothing"
    for what, value in secrets.items():
        assert value not in logged, f"the {what} was logged"
    # The same traffic answers with the hub's security headers.
    for response in (issued, login, personal):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"] == "no-referrer"
