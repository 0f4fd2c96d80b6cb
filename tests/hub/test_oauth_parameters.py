"""OAuth requests carry each parameter once, in the form body only (RFC 6749 3.1 and 3.2, RFC 7009 2.1, RFC 7662
2.1): a repeated parameter or any query parameter is `invalid_request` before the client is authenticated."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.identity.models import AccessToken
from hub.transparency.models import AuditEntry
from tests.hub import factories as f


@pytest.fixture
def basic(session, settings) -> dict[str, str]:
    c = f.client(session, f.partner(session), hub_secret=f.hub_secret(settings))
    return {"Authorization": "Basic " + base64.b64encode(f"{c.client_id}:{c.secret}".encode()).decode()}


def _written(session) -> tuple[int, int]:
    f.as_system(session)
    return (
        session.scalar(select(func.count()).select_from(AccessToken)) or 0,
        session.scalar(select(func.count()).select_from(AuditEntry)) or 0,
    )


GRANT = "grant_type=client_credentials"
FORM = "application/x-www-form-urlencoded"

CASES: dict[str, Callable[[Any, dict[str, str]], Any]] = {
    "grant_type twice": lambda c, h: c.post("/oauth/token", data=f"{GRANT}&{GRANT}", content_type=FORM, headers=h),
    "grant_type twice, another value": lambda c, h: c.post(
        "/oauth/token", data=f"{GRANT}&grant_type=password", content_type=FORM, headers=h
    ),
    "scope twice": lambda c, h: c.post(
        "/oauth/token", data=f"{GRANT}&scope=feed:read&scope=match", content_type=FORM, headers=h
    ),
    "grant_type in the query": lambda c, h: c.post(f"/oauth/token?{GRANT}", data="", content_type=FORM, headers=h),
    "scope in the query": lambda c, h: c.post("/oauth/token?scope=match", data=GRANT, content_type=FORM, headers=h),
    "an unknown query parameter": lambda c, h: c.post("/oauth/token?x=1", data=GRANT, content_type=FORM, headers=h),
    "token twice at revoke": lambda c, h: c.post(
        "/oauth/revoke", data="token=a&token=b", content_type=FORM, headers=h
    ),
    "token in the query at revoke": lambda c, h: c.post("/oauth/revoke?token=a", data="", content_type=FORM, headers=h),
    "token in the query at introspect": lambda c, h: c.post(
        "/oauth/introspect?token=a", data="token=a", content_type=FORM, headers=h
    ),
}


@pytest.mark.parametrize("call", CASES.values(), ids=CASES.keys())
def test_a_repeated_or_query_parameter_is_invalid_request(client, session, basic, call):
    before = _written(session)
    r = call(client, basic)
    assert r.status_code == 400, r.get_json()
    body = r.get_json()
    assert body["error"] == "invalid_request" and body["error_description"], body
    assert r.headers["Cache-Control"] == "no-store"
    assert _written(session) == before


def test_the_same_request_without_repeats_gets_a_token(client, session, basic):
    r = client.post("/oauth/token", data=f"{GRANT}&scope=feed:read", content_type=FORM, headers=basic)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["scope"] == "feed:read"
