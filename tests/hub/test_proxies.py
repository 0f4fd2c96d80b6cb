"""Forwarded headers count only from the configured proxies, on the test client and on a served waitress;
waitress refuses a declared oversized body before reading it."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator
from contextlib import closing

import pytest
import requests

from hub.app import MAX_BODY_BYTES, create_app
from hub.config import Settings
from hub.errors import ConfigError
from hub.ops.serving import make_embedded_server
from tests.hub import factories as f
from tests.ports import free_port

PROXY = "10.0.0.5"
CLIENT = "203.0.113.9"


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


@pytest.mark.parametrize(
    ("peer", "forwarded", "status"),
    [
        (PROXY, {"X-Forwarded-For": CLIENT, "X-Forwarded-Proto": "https"}, 200),
        (PROXY, {"X-Forwarded-For": CLIENT, "X-Forwarded-Proto": "http"}, 400),
        (PROXY, {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http"}, 200),
        ("198.51.100.7", {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}, 400),
        ("::ffff:10.0.0.5", {"X-Forwarded-For": CLIENT, "X-Forwarded-Proto": "https"}, 200),
    ],
    ids=[
        "https client behind the proxy",
        "plain http client behind the proxy",
        "local client behind the proxy",
        "a stranger claiming https and loopback",
        "the proxy as an ipv4-mapped address",
    ],
)
def test_the_transport_rule_believes_only_the_proxy(session, settings, database, session_factory, peer, forwarded,
                                                    status):
    app = create_app(settings.replace(trusted_proxies=(f"{PROXY}/32",)), engine=database.engine,
                     session_factory=session_factory)
    c = f.client(session, f.partner(session), hub_secret=f.hub_secret(settings))
    r = app.test_client().post(
        "/oauth/token", data={"grant_type": "client_credentials"},
        headers={**_basic(c.client_id, c.secret), **forwarded}, environ_base={"REMOTE_ADDR": peer},
    )
    assert r.status_code == status, r.json
    if status == 400:
        assert r.json["error"] == "invalid_request" and "HTTPS" in r.json["error_description"]


def test_without_trusted_proxies_forwarded_headers_are_ignored(session, settings, database, session_factory):
    app = create_app(settings, engine=database.engine, session_factory=session_factory)
    c = f.client(session, f.partner(session), hub_secret=f.hub_secret(settings))
    r = app.test_client().post(
        "/oauth/token", data={"grant_type": "client_credentials"},
        headers={**_basic(c.client_id, c.secret), "X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.1"},
        environ_base={"REMOTE_ADDR": CLIENT},
    )
    assert r.status_code == 400 and "HTTPS" in r.json["error_description"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"proxy_fix_hops": 1}, "HASHFED_TRUSTED_PROXIES is not"),
        ({"trusted_proxies": ("10.0.0.0/33",)}, "HASHFED_TRUSTED_PROXIES="),
        ({"trusted_proxies": ("proxy.internal",)}, "HASHFED_TRUSTED_PROXIES="),
    ],
    ids=["hops without proxies", "bad prefix", "a hostname"],
)
def test_proxy_settings_are_checked(changes, message):
    with pytest.raises(ConfigError, match=message):
        Settings(**changes)
    assert Settings.from_env({"HASHFED_TRUSTED_PROXIES": "10.0.0.5, fd00::/8"}).trusted_proxies == (
        "10.0.0.5", "fd00::/8"
    )


@pytest.fixture
def served(settings, database, session_factory) -> Iterator[str]:
    """The app on a real waitress server (as `hashfed serve` builds it) behind a 'proxy' on 127.0.0.1."""
    app = create_app(settings.replace(trusted_proxies=("127.0.0.1",)), engine=database.engine,
                     session_factory=session_factory)
    port = free_port()
    server = make_embedded_server(app, "127.0.0.1", port, 2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        # Closed from the server's own loop thread: closing it from here races its poll (EBADF).
        server.trigger.pull_trigger(server.close)
        thread.join(timeout=5)


def test_waitress_passes_forwarded_headers_to_the_proxy_rule(served, session, settings):
    c = f.client(session, f.partner(session), hub_secret=f.hub_secret(settings))
    session.commit()
    form = {"grant_type": "client_credentials"}
    plain = requests.post(f"{served}/oauth/token", data=form, timeout=10,
                          headers={**_basic(c.client_id, c.secret), "X-Forwarded-For": CLIENT,
                                   "X-Forwarded-Proto": "http"})
    assert plain.status_code == 400 and "HTTPS" in plain.json()["error_description"]
    tls = requests.post(f"{served}/oauth/token", data=form, timeout=10,
                        headers={**_basic(c.client_id, c.secret), "X-Forwarded-For": CLIENT,
                                 "X-Forwarded-Proto": "https"})
    assert tls.status_code == 200 and tls.json()["access_token"]


def test_waitress_refuses_a_declared_oversized_body_before_reading_it(served):
    host, port = served.removeprefix("http://").split(":")
    with closing(socket.create_connection((host, int(port)), timeout=10)) as conn:
        conn.sendall(
            f"POST /oauth/token HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
        )
        answer = conn.recv(4096).decode(errors="replace")  # the body never comes: an answer means it was not awaited
    assert answer.startswith("HTTP/1.1 413"), answer
