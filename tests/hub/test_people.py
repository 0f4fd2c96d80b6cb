"""Staff users: login, console session cookie, personal tokens, disabling; and the operator CLI."""

from __future__ import annotations

import json

from click.testing import CliRunner
from flask_smorest import Blueprint

from hub.app import create_app
from hub.cli.main import main
from hub.identity import people
from hub.identity.auth import current_principal, require_scope
from hub.transparency.auditlog import Actor
from tests.hub import factories as f

PASSWORD = "correct horse battery"


def _app(settings, database, session_factory):
    app = create_app(settings, engine=database.engine, session_factory=session_factory)
    blp = Blueprint("probe", __name__)

    @blp.route("/v1/probe")
    @require_scope("audit:read")
    def probe():
        return {"user": current_principal().user_id}

    app.register_blueprint(blp)
    return app


def test_login_session_and_personal_token(settings, database, session_factory, session):
    gov = f.partner(session, kind="governance")
    user = people.create_user(session, gov.id, "Ana@Example.org", PASSWORD, Actor.operator())
    c = _app(settings, database, session_factory).test_client()
    wrong = {"email": "ana@example.org", "password": "wrong password!"}
    assert c.post("/console/login", json=wrong).status_code == 401
    r = c.post("/console/login", json={"email": "ana@example.org", "password": PASSWORD})
    assert r.status_code == 200
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Strict" in cookie
    assert c.post("/console/tokens", json={"scopes": ["hashes:write"]}).status_code == 422
    r = c.post("/console/tokens", json={"name": "laptop", "scopes": ["audit:read"]})
    assert r.status_code == 201
    token = r.json["access_token"]
    assert c.get("/v1/probe", headers=f.auth(token)).json == {"user": user.id}
    f.as_system(session)
    people.disable_user(session, user.id, Actor.operator())
    assert c.get("/v1/probe", headers=f.auth(token)).status_code == 401
    assert c.post("/console/tokens", json={"name": "again"}).status_code == 401


def test_people_belong_to_governance_or_regulator_partners(session):
    import pytest

    from hub.errors import ValidationError

    with pytest.raises(ValidationError):
        people.create_user(session, f.partner(session).id, "x@example.org", PASSWORD, Actor.operator())


def test_cli_partner_client_user(fresh_database, tmp_path, monkeypatch):
    database = fresh_database
    # As an operator would: the CLI connects with the application role's URL on PostgreSQL.
    monkeypatch.setenv("HASHFED_DATABASE_URL", database.app_url)
    monkeypatch.setenv("HASHFED_VAR_DIR", str(tmp_path))
    run = CliRunner().invoke
    r = run(main, ["partner", "create", "acme-cli", "--kind", "platform"])
    assert r.exit_code == 0, r.output
    r = run(main, ["client", "create", "acme-cli", "--scope", "feed:read"])
    assert r.exit_code == 0 and "client secret: " in r.output, r.output
    client_id = r.output.split("client id: ")[1].split()[0]
    assert run(main, ["client", "create", "acme-cli", "--scope", "audit:read"]).exit_code != 0
    rotated = run(main, ["client", "rotate", client_id, "--json"])
    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.output)["client_id"] == client_id and json.loads(rotated.output)["client_secret"]
    assert run(main, ["client", "revoke", client_id]).exit_code == 0
    assert run(main, ["partner", "suspend", "acme-cli", "--reason", "test"]).exit_code == 0
    assert run(main, ["partner", "resume", "acme-cli", "--reason", "test"]).exit_code == 0
    assert "acme-cli" in run(main, ["partner", "list"]).output
    run(main, ["partner", "create", "gov-cli", "--kind", "governance"])
    r = run(main, ["user", "create", "gov-cli", "bo@example.org", "--password", PASSWORD])
    assert r.exit_code == 0, r.output
    assert run(main, ["user", "disable", "bo@example.org"]).exit_code == 0


def test_wrong_passwords_are_audited_once_a_minute_and_throttled(settings, database, session_factory, session):
    from sqlalchemy import select

    from hub.transparency.models import AuditEntry

    gov = f.partner(session, kind="governance")
    people.create_user(session, gov.id, "bo@example.org", PASSWORD, Actor.operator())
    app = create_app(settings.replace(login_rate_limit="3/minute"), engine=database.engine,
                     session_factory=session_factory)
    c = app.test_client()
    wrong = {"email": "bo@example.org", "password": "not the password"}
    codes = [c.post("/console/login", json=wrong).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    f.as_system(session)
    actions = [e.entry for e in session.scalars(select(AuditEntry)) if b'"user.login_failed"' in e.entry]
    assert len(actions) == 1  # the first failure is recorded, the next ones in the same minute are not
    # The limit is per login name: another account from the same address may still log in.
    people.create_user(session, gov.id, "cy@example.org", PASSWORD, Actor.operator())
    assert c.post("/console/login", json={"email": "cy@example.org", "password": PASSWORD}).status_code == 200
