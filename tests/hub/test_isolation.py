"""Tenant isolation, walked over every route of the OpenAPI document.

Every `/v1` operation except the public trust endpoints must declare the OAuth security requirement,
answer 401 without a token, and, called with another partner's token holding every scope, neither return
partner A's data nor write anything on A's behalf. The walk reads /openapi.json, so a route added later
is checked without editing this file; `test_the_walk_catches_an_unprotected_route` shows it fails then.
On PostgreSQL, row-level security is checked directly as the backstop.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask_smorest import Blueprint
from sqlalchemy import func, select, text

from hub import rls
from hub.app import create_app
from hub.identity.models import SCOPES, AccessToken, OAuthClient, PartnerKind
from hub.transparency.models import AuditEntry
from tests.hub import factories as f
from tests.hub import reportkit

# Routes that are public on purpose (DESIGN.md): the signed key sets and the audit log's checkpoint.
PUBLIC = re.compile(r"^/v1/(keys(/.*)?|audit/checkpoint)$")
METHODS = ("get", "post", "put", "patch", "delete")


def operations(app: Flask) -> list[tuple[str, str, dict]]:
    spec = app.test_client().get("/openapi.json").json
    return [
        (path, method, {**op, "parameters": [*item.get("parameters", []), *op.get("parameters", [])]})
        for path, item in sorted(spec["paths"].items())
        for method, op in item.items()
        if method in METHODS
    ]


def _fill(path: str, op: dict, value: str) -> str:
    """Path parameters: 1 where the spec says integer (routing 404s otherwise), else the victim's id."""
    ints = {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"
            and p.get("schema", {}).get("type") == "integer"}
    return re.sub(r"\{([^}]+)\}", lambda m: "1" if m.group(1) in ints else value, path)


def walk(app: Flask, session, victim_ids: list[str], stranger_token: str) -> list[str]:
    """Problems found on every /v1 operation: unprotected, leaking or writing for the victim."""
    problems = []
    client = app.test_client()
    for path, method, op in operations(app):
        if not path.startswith("/v1/") or PUBLIC.match(path):
            continue
        where = f"{method.upper()} {path}"
        if not any("oauth2" in req for req in op.get("security", [])):
            problems.append(f"{where}: no oauth2 security requirement in the OpenAPI document")
        for victim in victim_ids:
            url = _fill(path, op, victim)
            body = {"partner_id": victim, "partner": victim, "contributor_id": victim}
            r = client.open(url, method=method.upper(), json=body)
            if r.status_code != 401:
                problems.append(f"{where}: {r.status_code} without a token (expected 401)")
            f.as_system(session)
            before = session.scalar(select(func.count()).select_from(AuditEntry))
            r = client.open(url, method=method.upper(), json=body, headers=f.auth(stranger_token))
            f.as_system(session)
            after = session.scalar(select(func.count()).select_from(AuditEntry))
            leaked = [v for v in victim_ids if v.encode() in r.data]
            if r.status_code < 300 and leaked:
                problems.append(f"{where}: another partner's token got {r.status_code} with {leaked}")
            if after != before:
                new = session.execute(select(AuditEntry.entry).where(AuditEntry.seq >= before)).scalars()
                if any(v.encode() in e for e in new for v in victim_ids):
                    problems.append(f"{where}: another partner's token wrote on the victim's behalf")
    return problems


@pytest.fixture
def victim_and_stranger(session, settings):
    victim = f.partner(session, name="victim")
    c = f.client(session, victim, jwks=True)
    stranger = f.partner(session, kind=PartnerKind.GOVERNANCE, name="stranger")
    # Every scope there is, so a 403 for a missing scope never hides a leak.
    stranger_token = f.token(session, stranger, list(SCOPES))
    # Data of the victim behind the routes that take an id of their own (reports).
    report_id = reportkit.victim_report(session, settings, victim)
    return [victim.id, c.client_id, report_id], stranger_token


def test_every_v1_route_is_protected_and_isolated(app, session, victim_and_stranger):
    victim_ids, stranger_token = victim_and_stranger
    assert walk(app, session, victim_ids, stranger_token) == []


def test_the_walk_catches_an_unprotected_route(
    settings, database, session_factory, session, victim_and_stranger
):
    victim_ids, stranger_token = victim_and_stranger
    app = create_app(settings, engine=database.engine, session_factory=session_factory)
    blp = Blueprint("leaky", __name__)

    @blp.route("/v1/leaky/<partner_id>")
    @blp.response(200)
    def leaky(partner_id):
        return {"partner": partner_id}

    app.extensions["flask-smorest"]["apis"][""]["ext_obj"].register_blueprint(blp)
    problems = walk(app, session, victim_ids, stranger_token)
    assert any("GET /v1/leaky/{partner_id}: no oauth2 security" in p for p in problems)
    assert any("without a token" in p for p in problems)
    assert any("another partner's token got 200" in p for p in problems)


def test_the_spec_declares_the_oauth2_scheme(client):
    spec = client.get("/openapi.json").json
    scheme = spec["components"]["securitySchemes"]["oauth2"]
    assert scheme["flows"]["clientCredentials"]["tokenUrl"].endswith("/oauth/token")
    assert set(scheme["flows"]["clientCredentials"]["scopes"]) == set(SCOPES)


@pytest.mark.postgres_only
def test_row_level_security_is_the_backstop(database, connection, session):
    a, b = f.partner(session), f.partner(session)
    ca, cb = f.client(session, a), f.client(session, b)
    f.token(session, a, ["feed:read"], client_row=ca.row)
    session.flush()
    forced = rls.tables_with_rls(connection)
    for table in ("oauth_clients", "access_tokens", "users", "console_sessions"):
        assert forced.get(table) is True, table
    rls.set_tenant(session, a.id)
    assert set(session.scalars(select(OAuthClient.client_id))) == {ca.client_id}
    assert {t.partner_id for t in session.scalars(select(AccessToken))} == {a.id}
    # A write for another partner is refused by the policy's WITH CHECK.
    with pytest.raises(Exception, match="row-level security"), session.begin_nested():
        session.execute(
            text("UPDATE oauth_clients SET partner_id = :b WHERE client_id = :c"),
            {"b": b.id, "c": ca.client_id},
        )
    rls.set_tenant(session, None)
    assert session.scalar(select(func.count()).select_from(OAuthClient)) == 0
    rls.set_tenant(session, rls.SYSTEM)
    assert {ca.client_id, cb.client_id} <= set(session.scalars(select(OAuthClient.client_id)))
