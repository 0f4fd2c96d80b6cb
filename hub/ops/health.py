"""Liveness and readiness: is the process up, is the database reachable and migrated."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from hub.db import utcnow
from hub.ops import migrate
from hub.transparency.keys import readiness
from hub.upstreams import service as upstreams
from hub.web import db, state

blp = Blueprint("health", __name__, description="Operations: liveness and readiness")


@blp.route("/healthz")
@blp.response(200)
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.response(200)
@blp.alt_response(503, description="not ready; `reason` says why")
def readyz() -> tuple[dict[str, Any], int]:
    """The database is reachable and its schema is at the Alembic head; `checks.upstreams` names any upstream
    whose last pull fed nothing, and why."""
    hub = state()
    checks: dict[str, str] = {}
    reasons: list[str] = []
    try:
        conn = db().connection()
        conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
        problem = migrate.schema_status(conn)
        checks["schema"] = problem or "ok"
        if problem:
            reasons.append(problem)
    except SQLAlchemyError:
        checks["database"] = "unreachable"
        reasons.append("database unreachable")
    if checks.get("schema") == "ok":
        problem, warning = readiness(hub.settings, db(), utcnow(), hub.services)
        checks["keys"] = problem or warning or "ok"
        if problem:
            reasons.append(problem)
        # An upstream that stopped feeding is reported, not a reason to take the hub out of service.
        failing = upstreams.failing(db())
        checks["upstreams"] = "; ".join(f"{u.name}: {u.last_error}" for u in failing) if failing else "ok"
    if reasons:
        return {"status": "unavailable", "reason": "; ".join(reasons), "checks": checks}, 503
    return {"status": "ready", "checks": checks}, 200
