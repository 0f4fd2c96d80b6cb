"""`/metrics` names collections: only an operator's scrape token (scope `metrics:read`) reads it."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hub.identity.models import KIND_SCOPES
from hub.transparency.models import AuditEntry
from tests.hub import factories as f
from tests.hub import feedkit as kit


@pytest.fixture
def slug(session, settings) -> str:
    hk = kit.hub_keys(session, settings)
    owner = kit.partner(session)
    return kit.collection(session, hk, owner, slug="secret-slug").slug


def _entries(session) -> int:
    f.as_system(session)
    return session.scalar(select(func.count()).select_from(AuditEntry)) or 0


@pytest.mark.parametrize(
    ("who", "status"),
    [("nobody", 401), ("platform with every scope", 403), ("governance without metrics:read", 403)],
    ids=["no token", "platform token", "governance token without the scope"],
)
def test_metrics_without_a_scrape_token_are_refused_and_name_nothing(client, session, slug, who, status):
    headers: dict[str, str] = {}
    if who.startswith("platform"):
        headers = f.auth(f.token(session, f.partner(session), sorted(KIND_SCOPES["platform"])))
    elif who.startswith("governance"):
        headers = f.auth(f.token(session, f.partner(session, kind="governance"), ["feed:read", "governance"]))
    before = _entries(session)
    r = client.get("/metrics", headers=headers)
    assert r.status_code == status
    assert "secret-slug" not in r.get_data(as_text=True)
    body = r.get_json()
    assert body["code"] == status and body["message"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer ")
    assert _entries(session) == before


def test_an_operators_scrape_token_reads_metrics(client, session, slug):
    assert "metrics:read" in KIND_SCOPES["governance"]
    assert all("metrics:read" not in KIND_SCOPES[k] for k in ("platform", "intake", "regulator"))
    ops = f.partner(session, kind="governance")
    r = client.get("/metrics", headers=f.auth(f.token(session, ops, ["metrics:read"])))
    assert r.status_code == 200
    assert r.mimetype == "text/plain"
    assert f'hashfed_pending_changes{{collection="{slug}"}} 0.0' in r.get_data(as_text=True)


def test_readyz_needs_no_token(client):
    """The compose healthcheck probes /readyz without a token; only /metrics changed."""
    assert client.get("/readyz").status_code in (200, 503)
    assert client.get("/healthz").status_code == 200
