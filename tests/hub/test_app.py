from flask_smorest import Blueprint
from sqlalchemy import func, select

from hub.app import create_app
from hub.config import Settings
from hub.errors import ConflictError
from hub.identity.models import Partner
from tests.conftest import create_database, drop_database


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json == {"status": "ok"}


def test_readyz_is_200_at_head(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.json
    assert r.json["checks"]["schema"] == "ok"


def test_readyz_is_503_on_an_unmigrated_database(tmp_path):
    url, name = create_database(migrate_to=None)
    try:
        settings = Settings(var_dir=tmp_path, database_url=url)
        r = create_app(settings).test_client().get("/readyz")
        assert r.status_code == 503
        assert "not initialised" in r.json["reason"]
    finally:
        drop_database(name)


def test_readyz_is_503_when_the_database_is_unreachable(tmp_path):
    settings = Settings(var_dir=tmp_path, database_url="postgresql://nobody@127.0.0.1:1/none")
    r = create_app(settings).test_client().get("/readyz")
    assert r.status_code == 503
    assert r.json["checks"]["database"] == "unreachable"


def test_openapi_and_docs_are_served(client):
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    assert "/readyz" in spec.json["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert b"swagger" in docs.data.lower()


def test_errors_have_one_body_and_keep_their_headers(client):
    r = client.post("/healthz")
    assert r.status_code == 405
    assert r.json["code"] == 405 and r.json["status"] == "Method Not Allowed"
    assert "GET" in r.headers["Allow"]
    r = client.get("/no/such/route")
    assert r.status_code == 404
    assert set(r.json) == {"code", "status", "message"}


def _app_with_probe_routes(settings, database, session_factory):
    app = create_app(settings, engine=database.engine, session_factory=session_factory)
    blp = Blueprint("probe", __name__)

    @blp.route("/probe/<name>/<outcome>", methods=["POST"])
    def probe(name, outcome):
        from hub.web import db

        db().add(Partner(name=name, kind="platform"))
        db().flush()
        if outcome == "conflict":
            raise ConflictError("already there", headers={"X-Probe": "1"})
        if outcome == "crash":
            raise RuntimeError("secret internal detail")
        return {"ok": True}

    app.register_blueprint(blp)
    return app


def test_a_request_commits_on_success_and_writes_nothing_on_error(settings, database, session_factory, session):
    app = _app_with_probe_routes(settings, database, session_factory)
    client = app.test_client()
    count = lambda name: session.scalar(select(func.count()).where(Partner.name == name))  # noqa: E731

    assert client.post("/probe/kept/ok").status_code == 200
    assert count("kept") == 1

    r = client.post("/probe/refused/conflict")
    assert r.status_code == 409
    assert r.json == {"code": 409, "status": "Conflict", "message": "already there"}
    assert r.headers["X-Probe"] == "1"
    assert count("refused") == 0

    app.config["PROPAGATE_EXCEPTIONS"] = False
    r = client.post("/probe/crashed/crash")
    assert r.status_code == 500
    assert "secret" not in r.get_data(as_text=True)
    assert count("crashed") == 0
