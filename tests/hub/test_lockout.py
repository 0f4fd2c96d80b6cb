"""Rate limits at the OAuth endpoints count per (client id, address) and per address: a caller elsewhere
cannot lock a client out by failing under its id, and introspection and revocation are limited too."""

from __future__ import annotations

import base64

import pytest

from hub.app import create_app
from tests.hub import factories as f

ATTACKER = {"REMOTE_ADDR": "198.51.100.7"}
PARTNER = {"REMOTE_ADDR": "203.0.113.5"}
HTTPS = "https://hub.example.org"  # plain HTTP is refused from a non-loopback address


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


@pytest.fixture
def limited(settings, database, session_factory):
    app = create_app(
        settings.replace(token_rate_limit="3/minute", token_rate_limit_address="6/minute"),
        engine=database.engine,
        session_factory=session_factory,
    )
    return app.test_client()


def _token(client, client_id: str, secret: str, where: dict[str, str]):
    return client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=_basic(client_id, secret),
        environ_base=where,
        base_url=HTTPS,
    )


def test_wrong_secrets_from_elsewhere_do_not_lock_the_client_out(limited, session, settings):
    c = f.client(session, f.partner(session), hub_secret=f.hub_secret(settings))
    codes = [_token(limited, c.client_id, "x" * 43, ATTACKER).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    r = _token(limited, c.client_id, c.secret, PARTNER)
    assert r.status_code == 200, r.json
    assert "access_token" in r.json


def test_one_address_is_limited_across_client_ids(limited, session, settings):
    codes = [_token(limited, f"hfc_guess{i}", "x" * 43, ATTACKER).status_code for i in range(7)]
    assert codes == [401] * 6 + [429]
    # Another address is not affected.
    c = f.client(session, f.partner(session), hub_secret=f.hub_secret(settings))
    assert _token(limited, c.client_id, c.secret, PARTNER).status_code == 200


@pytest.mark.parametrize("endpoint", ["/oauth/introspect", "/oauth/revoke"], ids=["introspect", "revoke"])
def test_introspection_and_revocation_are_rate_limited(limited, session, settings, endpoint):
    c = f.client(session, f.partner(session), hub_secret=f.hub_secret(settings))

    def call():
        headers = _basic(c.client_id, c.secret)
        return limited.post(endpoint, data={"token": "t" * 43}, headers=headers, environ_base=PARTNER, base_url=HTTPS)

    assert [call().status_code for _ in range(4)] == [200, 200, 200, 429]
    r = call()
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0 and r.json["code"] == 429
    # The token endpoint counts on its own.
    assert _token(limited, c.client_id, c.secret, PARTNER).status_code == 200
