"""A real OAuth client library against a server on loopback: authlib OAuth2Session with PrivateKeyJWT."""

from __future__ import annotations

import json
import threading

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from werkzeug.serving import make_server

from hub import rls
from hub.app import create_app
from hub.config import Settings
from hub.db import make_session_factory
from hub.identity import tenants
from hub.transparency.auditlog import Actor
from tests.hub import factories as f
from tests.ports import free_port


def test_authlib_client_gets_a_token_with_private_key_jwt(fresh_database, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        var_dir=tmp_path / "var", database_url=fresh_database.app_url, base_url=base, hub_name="hub.test"
    )
    key = f.new_key()
    with make_session_factory(fresh_database.engine).begin() as session:
        rls.set_tenant(session, rls.SYSTEM)
        partner = tenants.create_partner(session, "loopback", "platform", Actor.operator())
        client_id = tenants.create_client(
            session,
            partner.id,
            "kit",
            ["feed:read", "match"],
            hub_secret=f.HUB_SECRET,
            actor=Actor.operator(),
            jwks=json.dumps(f.public_jwks(key)),
            default_scopes=["feed:read"],
        ).client.client_id

    app = create_app(settings, engine=fresh_database.engine)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        meta = requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=10).json()
        token_url = meta["token_endpoint"]
        assert token_url == f"{base}/oauth/token"
        # The private key stays with the client; the hub only holds its public JWKS.
        oauth = OAuth2Session(
            client_id, key, token_endpoint_auth_method="private_key_jwt", scope="feed:read match"
        )
        oauth.register_client_auth_method(PrivateKeyJWT(token_url, alg="ES256"))
        token = oauth.fetch_token(token_url, grant_type="client_credentials")
        assert token["token_type"] == "Bearer" and token["expires_in"] == 600
        assert set(token["scope"].split()) == {"feed:read", "match"}
        # Introspection with a second assertion (a fresh jti) through the same library.
        r = oauth.introspect_token(f"{base}/oauth/introspect", token=token["access_token"])
        assert r.status_code == 200 and r.json()["active"] is True
    finally:
        server.shutdown()
        thread.join(timeout=5)
