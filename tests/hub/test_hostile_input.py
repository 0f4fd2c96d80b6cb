"""Hostile input before (or instead of) authentication: every case is a clear 4xx in the hub's error shape,
and writes nothing."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from joserfc import jwt
from sqlalchemy import func, select

from audit.merkle import b64encode
from hub.identity import people
from hub.identity.models import AccessToken, ConsoleSession, UsedJti
from hub.transparency.auditlog import Actor
from hub.transparency.models import AuditEntry
from tests.hub import factories as f
from tests.hub import feedkit as kit

TOKEN_URL = "http://127.0.0.1:8000/oauth/token"
HUGE = 10**20  # past any 64-bit integer column
PASSWORD = "correct horse battery"


@dataclass
class World:
    client_id: str
    secret: str
    jwt_client: f.Client
    collection: str
    feed: dict[str, str]
    audit: dict[str, str]


@pytest.fixture
def world(session, settings) -> World:
    hk = kit.hub_keys(session, settings)
    owner = f.partner(session)
    c = kit.collection(session, hk, owner)
    kit.submit(session, c, owner, [{"type": "pdq", "value": kit.pdq()}])
    kit.seal(session, hk)
    secret_client = f.client(session, owner, hub_secret=f.hub_secret(settings))
    gov = f.partner(session, kind="governance")
    people.create_user(session, gov.id, "ana@example.org", PASSWORD, Actor.operator())
    return World(
        secret_client.client_id,
        secret_client.secret or "",
        f.client(session, owner, jwks=True),
        c.id,
        f.auth(f.token(session, owner, ["feed:read"])),
        f.auth(f.token(session, gov, ["audit:read"])),
    )


def _basic_raw(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _assertion(w: World, sub: str, *, signed: bool = True) -> dict[str, str]:
    """A client assertion naming `sub`; unsigned ones carry what no JWT library writes (a lone surrogate)."""
    now = int(time.time())
    claims = {"iss": sub, "sub": sub, "aud": TOKEN_URL, "iat": now, "exp": now + 60, "jti": "j-1"}
    key = w.jwt_client.key
    assert key is not None
    header = {"alg": "ES256", "kid": key.kid}
    if signed:
        assertion = jwt.encode(header, claims, key)
    else:
        # json.dumps writes the lone surrogate as an escape; the signature is never checked that far.
        parts = (json.dumps(header).encode(), json.dumps(claims).encode(), b"\0" * 64)
        assertion = ".".join(_b64url(p) for p in parts)
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }


def _login_raw(body: str) -> Callable[[Any, World], Any]:
    return lambda c, w: c.post("/console/login", data=body, content_type="application/json")


GRANT = {"grant_type": "client_credentials"}
NON_UTF8 = b"\xff\xfe\xfd:\xff"

# (request, the error body's shape: "smorest" {"code", "status", "message"} or "oauth" {"error", ...})
CASES: list[tuple[Callable[[Any, World], Any], str]] = [
    (lambda c, w: c.get("/v1/keys/99999999999999999999"), "smorest"),
    (lambda c, w: c.get("/v1/keys/2147483648"), "smorest"),
    (lambda c, w: c.post("/oauth/token", data=GRANT, headers=_basic_raw(NON_UTF8)), "oauth"),
    (lambda c, w: c.post("/oauth/introspect", data={"token": "x"}, headers=_basic_raw(NON_UTF8)), "oauth"),
    (lambda c, w: c.post("/oauth/revoke", data={"token": "x"}, headers=_basic_raw(NON_UTF8)), "oauth"),
    (lambda c, w: c.post("/oauth/token", data=GRANT, headers=_basic_raw(b"hfc_\x00a:secret")), "oauth"),
    (lambda c, w: c.post("/oauth/token", data=GRANT, headers=_basic_raw(b"hfc_%00a:secret")), "oauth"),
    (lambda c, w: c.post("/oauth/token", data={**GRANT, "client_id": "hfc_\x00a", "client_secret": "s"}), "oauth"),
    (lambda c, w: c.post("/oauth/token", data=_assertion(w, "hfc_\x00a")), "oauth"),
    (lambda c, w: c.post("/oauth/token", data=_assertion(w, "hfc_\ud800", signed=False)), "oauth"),
    (lambda c, w: c.post("/console/login", json={"email": "ana\x00@example.org", "password": PASSWORD}), "smorest"),
    (_login_raw('{"email": "\\ud800@example.org", "password": "correct horse battery"}'), "smorest"),
    (_login_raw('{"email": ' + "[" * 3000 + "]" * 3000 + ', "password": "x"}'), "smorest"),
    (lambda c, w: c.get(f"/v1/collections/{w.collection}/batches/99999999999999999999", headers=w.feed), "smorest"),
    (
        lambda c, w: c.post(
            f"/v1/collections/{w.collection}/ack", json={"size": HUGE, "root": b64encode(b"\0" * 32)}, headers=w.feed
        ),
        "smorest",
    ),
    (lambda c, w: c.get(f"/v1/collections/{w.collection}/batches?since_size={HUGE}", headers=w.feed), "smorest"),
    (lambda c, w: c.get(f"/v1/audit/entries?start={HUGE}", headers=w.audit), "smorest"),
    (lambda c, w: c.get(f"/v1/audit/entries?start=0&end={HUGE}", headers=w.audit), "smorest"),
]
IDS = [
    "key version past int64",
    "key version past int32",
    "non-UTF-8 Basic at token",
    "non-UTF-8 Basic at introspect",
    "non-UTF-8 Basic at revoke",
    "NUL in a Basic client id",
    "percent-encoded NUL in a Basic client id",
    "NUL in a form client id",
    "NUL in an assertion sub",
    "lone surrogate in an assertion sub",
    "NUL in a login email",
    "lone surrogate in a login email",
    "JSON nested 3000 deep at login",
    "batch seq past int64",
    "ack size past int64",
    "since_size past int64",
    "audit start past int64",
    "audit end past int64",
]


def _written(session) -> tuple[int, ...]:
    f.as_system(session)
    return tuple(
        session.scalar(select(func.count()).select_from(model))
        for model in (AuditEntry, AccessToken, UsedJti, ConsoleSession)
    )


@pytest.mark.parametrize(("call", "shape"), CASES, ids=IDS)
def test_hostile_input_is_a_clear_4xx_that_writes_nothing(client, session, world, call, shape):
    before = _written(session)
    r = call(client, world)
    assert 400 <= r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:300])
    body = r.get_json()
    if shape == "oauth":
        assert set(body) <= {"error", "error_description", "error_uri"} and body["error"], body
    else:
        assert body["code"] == r.status_code and body["status"] and body["message"], body
    assert _written(session) == before


@pytest.mark.parametrize("endpoint", ["/oauth/revoke", "/oauth/introspect"])
def test_an_unsupported_token_type_is_400(client, world, endpoint):
    basic = _basic_raw(f"{world.client_id}:{world.secret}".encode())
    r = client.post(endpoint, data={"token": "x", "token_type_hint": "refresh_token"}, headers=basic)
    assert r.status_code == 400  # RFC 7009 2.2.1
    assert r.get_json()["error"] == "unsupported_token_type"


def test_unknown_client_and_wrong_secret_get_the_same_answer(client, world):
    unknown = client.post("/oauth/token", data=GRANT, headers=_basic_raw(b"hfc_nobody:" + world.secret.encode()))
    wrong = client.post("/oauth/token", data=GRANT, headers=_basic_raw(world.client_id.encode() + b":" + b"x" * 43))
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.get_json() == wrong.get_json()
    assert unknown.headers["WWW-Authenticate"] == wrong.headers["WWW-Authenticate"]
    assert unknown.get_json()["error"] == "invalid_client"
    # A private_key_jwt client's assertion naming an unknown client: the same words again.
    assertion = client.post("/oauth/token", data=_assertion(world, "hfc_nobody"))
    assert assertion.get_json()["error_description"] == unknown.get_json()["error_description"]

