"""The console's exports page over HTTP: who sees it, the bundle download, the governance-only create form."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from audit.exports import parse_entry
from hub.console.routes import CONTENT_SECURITY_POLICY
from hub.exports.models import Export
from hub.ops.jobs import integrate_audit_log
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor, AuditEntry
from tests.console.conftest import GOV_EMAIL, REG_EMAIL, csrf_token, sign_in
from tests.hub import factories as f

# The world's entries are all recorded in March 2026; one entry in April and a checkpoint signed after it
# close March. April is still open.
LATER = datetime(2026, 4, 2, 12, 0, tzinfo=UTC)
CLOSED, OPEN = "2026-03", "2026-04"


@pytest.fixture
def later(world, session, session_factory, time_machine):
    time_machine.move_to(LATER, tick=False)
    auditlog.record(session, Actor.operator(), "feed.ack", f"collection/{world.w.c.id}",
                    {"partner": world.w.a.id, "size": 2, "root": "AAAA"}, now=LATER)
    session.commit()
    integrate_audit_log(session_factory, LATER, keys=world.w.keys)
    f.as_system(session)
    return world


def _counts(session) -> tuple[int, int]:
    f.as_system(session)
    return (session.scalar(select(func.count()).select_from(Export)),
            session.scalar(select(func.count()).select_from(AuditEntry)))


def _create(client, period: str):
    token = csrf_token(client.get("/console/exports").get_data(as_text=True))
    return client.post("/console/exports", data={"period": period, "csrf_token": token})


def test_governance_creates_and_a_regulator_lists_and_downloads(app, client, later, session):
    sign_in(client, GOV_EMAIL)
    made = _create(client, CLOSED)
    assert made.status_code == 303, made.get_data(as_text=True)
    done = client.get(made.headers["Location"]).get_data(as_text=True)
    assert "Created the export of 2026-03" in done
    f.as_system(session)
    row = session.scalars(select(Export)).one()
    entry = parse_entry(session.get(AuditEntry, row.audit_seq).entry)
    assert entry.action == "export.create" and entry.subject == f"export/{row.id}"
    assert entry.actor["partner"] == later.gov_partner and entry.actor["user"]

    regulator = app.test_client()
    sign_in(regulator, REG_EMAIL)
    page = regulator.get("/console/exports")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert 'href="/console/exports"' in html  # in the navigation
    assert f'title="{row.bundle_sha256}"' in html and f"{row.bundle_sha256[:12]}…" in html
    assert "<td>2026-03</td>" in html and 'name="period"' not in html  # no create form for a regulator
    listed = re.search(r'data-sha256="([0-9a-f]{64})"', html)
    link = re.search(r'href="(/console/exports/[0-9a-f-]{36}/bundle)"', html)
    assert listed and link

    got = regulator.get(link.group(1))
    assert got.status_code == 200 and got.mimetype == "application/zip"
    assert hashlib.sha256(got.data).hexdigest() == listed.group(1) == row.bundle_sha256
    assert got.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert got.headers["X-Content-Type-Options"] == "nosniff" and got.headers["Cache-Control"] == "no-store"
    # The same bytes as GET /v1/exports/{id} serves a regulator's API client.
    token = f.token(session, session.get(type(later.w.a), later.reg_partner), ["exports:read"])
    api = client.get(f"/v1/exports/{row.id}", headers=f.auth(token))
    assert api.status_code == 200 and api.data == got.data

    assert regulator.get("/console/exports/not-an-id/bundle").status_code == 404


def test_a_regulator_cannot_create_an_export(client, later, session):
    sign_in(client, REG_EMAIL)
    before = _counts(session)
    r = _create(client, CLOSED)
    assert r.status_code == 403
    assert _counts(session) == before


def test_without_a_staff_session_nothing_is_shown(client, world, session):
    f.as_system(session)
    platform_token = f.token(session, world.w.a, ["exports:read"])
    for headers in ({}, f.auth(platform_token)):  # the console reads its session cookie only, never a bearer
        for url in ("/console/exports", f"/console/exports/{'0' * 8}-0000-0000-0000-{'0' * 12}/bundle"):
            r = client.get(url, headers=headers)
            assert r.status_code == 303 and r.headers["Location"].endswith("/console/sign-in"), url


@pytest.mark.parametrize(
    ("period", "status", "message"),
    [("2026-13", 422, "is not a quarter"), ("", 422, "give a period"), ("x" * 40, 422, "a quarter"),
     (OPEN, 409, "after now")],
    ids=["no such month", "empty", "too long", "not closed yet"],
)
def test_a_bad_period_shows_its_4xx_and_writes_nothing(client, later, session, period, status, message):
    sign_in(client, GOV_EMAIL)
    before = _counts(session)
    r = _create(client, period)
    assert r.status_code == status
    assert message in r.get_data(as_text=True) and 'id="export-problem"' in r.get_data(as_text=True)
    assert _counts(session) == before


@pytest.mark.parametrize("token", [None, "0" * 64], ids=["no token", "forged token"])
def test_a_create_without_its_csrf_token_is_refused_and_writes_nothing(client, later, session, token):
    sign_in(client, GOV_EMAIL)
    before = _counts(session)
    data = {"period": CLOSED} | ({} if token is None else {"csrf_token": token})
    assert client.post("/console/exports", data=data).status_code == 400
    assert _counts(session) == before
