"""Webhook targets (SSRF): what registration refuses, and what a delivery connects to.

Deliveries land on real local HTTP(S) servers in threads; loopback is reachable only through the allow-list
(`HASHFED_WEBHOOK_ALLOW`), which RealHub sets to 127.0.0.0/8 and ::1/128 as a test deployment would.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from hub.app import create_app
from hub.transparency.auditlog import Actor
from hub.transparency.models import AuditEntry as AuditRow
from hub.webhooks import service as webhooks
from hub.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.partners.realhub import FlaskTransport, RealHub


@dataclasses.dataclass
class Seen:
    """One request a receiver got."""

    method: str
    path: str
    host: str | None
    body: bytes


class Receiver:
    """A real HTTP server in a thread that records each request and answers `status` (with `location`)."""

    def __init__(self, status: int = 200, location: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.seen: list[Seen] = []
        self.server_names: list[str | None] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.seen.append(Seen("POST", self.path, self.headers.get("Host"), body))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def strict(hub: RealHub) -> RealHub:
    """The same hub served with the default settings: no allow-list."""
    settings = hub.settings.replace(webhook_allow=())
    return dataclasses.replace(
        hub, settings=settings, app=create_app(settings, engine=hub.engine, session_factory=hub.factory)
    )


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for r in started:
        r.close()


def _actions(hub: RealHub) -> list[str]:
    with hub.session() as s:
        return [json.loads(e)["action"] for e in s.scalars(select(AuditRow.entry))]


def _endpoints(hub: RealHub) -> int:
    with hub.session() as s:
        return s.scalar(select(func.count()).select_from(WebhookEndpoint)) or 0


def _put(hub: RealHub, url: str) -> tuple[int, dict]:
    r = FlaskTransport(hub).request("PUT", "/v1/webhooks", json_body={"url": url}, max_bytes=1 << 16)
    return r.status, r.json()


def _sealed_collection(hub: RealHub) -> str:
    cid = hub.create_collection("ncii-main")
    hub.submit(cid, 3)
    hub.seal(cid)
    return cid


def _register(hub: RealHub, url: str) -> None:
    with hub.session() as s:
        webhooks.register(s, hub.partner_id, url, Actor.operator(), datetime.now(UTC), allow=hub.settings.webhook_allow)


def _deliveries(hub: RealHub) -> list[WebhookDelivery]:
    with hub.session() as s:
        rows = list(s.scalars(select(WebhookDelivery)))
        s.expunge_all()
        return rows


REFUSED = [
    # From the security review.
    pytest.param("http://127.0.0.1:8080/hook", "127.0.0.1 is loopback", id="http loopback"),
    pytest.param("https://169.254.169.254/latest/meta-data/", "169.254.169.254 is link-local", id="cloud metadata"),
    pytest.param("https://10.1.2.3/", "10.1.2.3 is private", id="rfc1918 10/8"),
    pytest.param("https://[::1]:6379/", "::1 is loopback", id="ipv6 loopback redis"),
    pytest.param("https://localhost./", "localhost. is loopback", id="localhost trailing dot"),
    # Names that are loopback.
    pytest.param("https://localhost/hook", "localhost is loopback", id="localhost"),
    pytest.param("https://LocalHost:8443/hook", "localhost is loopback", id="localhost mixed case"),
    pytest.param("https://api.localhost/hook", "api.localhost is loopback", id="under .localhost"),
    pytest.param("https://2130706433/", "2130706433 resolves to 127.0.0.1, which is loopback", id="decimal loopback"),
    pytest.param("https://0x7f.0.0.1/", "resolves to 127.0.0.1, which is loopback", id="hex loopback"),
    pytest.param("https://127.1/", "127.1 resolves to 127.0.0.1, which is loopback", id="short loopback"),
    # Address ranges.
    pytest.param("https://172.16.0.1/", "is private", id="rfc1918 172.16/12"),
    pytest.param("https://192.168.1.1/", "is private", id="rfc1918 192.168/16"),
    pytest.param("https://[fd00::1]/", "is private", id="ipv6 unique local"),
    pytest.param("https://[fe80::1]/", "is link-local", id="ipv6 link-local"),
    pytest.param("https://224.0.0.251/", "is multicast", id="ipv4 multicast"),
    pytest.param("https://[ff02::1]/", "is multicast", id="ipv6 multicast"),
    pytest.param("https://0.0.0.0/", "is unspecified", id="ipv4 unspecified"),
    pytest.param("https://[::]/", "is unspecified", id="ipv6 unspecified"),
    pytest.param("https://240.0.0.1/", "is reserved", id="ipv4 reserved"),
    pytest.param("https://100.64.0.1/", "CGNAT", id="cgnat"),
    pytest.param("https://192.0.2.1/", "is private", id="documentation net"),
    pytest.param("https://[::ffff:127.0.0.1]/", "loopback", id="mapped loopback"),
    pytest.param("https://[::ffff:169.254.169.254]/", "link-local", id="mapped metadata"),
    pytest.param("https://[::ffff:10.0.0.1]/", "private", id="mapped private"),
    pytest.param(
        "https://[64:ff9b::a9fe:a9fe]/",
        "link-local (cloud metadata lives here) (IPv4 embedded in IPv6)",
        id="nat64 metadata",
    ),
    pytest.param("https://[2002:7f00:1::]/", "loopback (IPv4 embedded in IPv6)", id="6to4 loopback"),
    # Scheme, userinfo, syntax.
    pytest.param("http://1.1.1.1/hook", "https only", id="plain http to public"),
    pytest.param("ftp://1.1.1.1/hook", "absolute https URL", id="ftp"),
    pytest.param("/hashfed/webhook", "absolute https URL", id="relative"),
    pytest.param("https://user:secret@1.1.1.1/hook", "user information", id="userinfo"),
    pytest.param("https://1.1.1.1@127.0.0.1/hook", "user information", id="userinfo hiding host"),
    pytest.param("https://1.1.1.1/hook#frag", "fragment", id="fragment"),
    pytest.param("https://1.1.1.1:0/hook", "port", id="port 0"),
    pytest.param("https://1.1.1.1:99999/hook", "not a valid absolute URL", id="port out of range"),
    pytest.param("https://%31%32%37.0.0.1/", "not a valid host name", id="percent-encoded host"),
    pytest.param("https://bad..name/", "not a valid host name", id="empty label"),
    pytest.param(
        "https://does-not-exist.invalid/hook", "does-not-exist.invalid does not resolve", id="unresolvable name"
    ),
    # Characters that must never be stored.
    pytest.param("https://1.1.1.1/hook\r\nX-Injected: 1", "control characters", id="crlf"),
    pytest.param("https://1.1.1.1/hook\n", "control characters", id="trailing lf"),
    pytest.param("https://1.1.1.1/a b", "control characters", id="space"),
    pytest.param("https://1.1.1.1/\t", "control characters", id="tab"),
    pytest.param("https://1.1.1.1/\x7f", "control characters", id="del"),
    pytest.param("https://1.1.1.1/caf\u00e9", "printable ASCII", id="non-ascii"),
    pytest.param("https://1.1.1.1/" + "a" * 2000, "longer than 2000", id="too long"),
]


def test_a_nul_in_the_url_is_refused_before_the_route(strict: RealHub) -> None:
    # Every JSON body is read strictly before any view (hub.web): NUL never reaches the webhook code.
    status, body = _put(strict, "https://1.1.1.1/a\x00b")
    assert status == 422 and body["errors"]["json"]["url"], body
    assert _endpoints(strict) == 0
    assert "webhook.register" not in _actions(strict)


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_registration_refuses_the_target(strict: RealHub, url: str, why: str) -> None:
    status, body = _put(strict, url)
    assert status == 422, body
    assert why in body["message"] and body["errors"]["url"] == [body["message"]]
    assert _endpoints(strict) == 0
    assert "webhook.register" not in _actions(strict)


@pytest.mark.parametrize(
    "url",
    ["https://1.1.1.1/hashfed/webhook", "https://[2606:4700:4700::1111]:8443/hook?kit=1"],
    ids=["public ipv4", "public ipv6 with port and query"],
)
def test_registration_accepts_a_public_https_target(strict: RealHub, url: str) -> None:
    status, body = _put(strict, url)
    assert (status, body["url"]) == (200, url)
    assert _endpoints(strict) == 1 and "webhook.register" in _actions(strict)


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("http://127.0.0.1:9/hashfed/webhook", 200),
        ("http://localhost:9/hashfed/webhook", 200),
        ("http://[::ffff:127.0.0.1]:9/hook", 200),
        ("http://[::1]:9/hook", 200),
        ("http://10.0.0.5/hook", 422),
        ("https://169.254.169.254/", 422),
    ],
    ids=["loopback literal", "localhost", "mapped loopback", "ipv6 loopback", "private outside the list", "metadata"],
)
def test_the_allow_list_admits_its_networks_only(hub: RealHub, url: str, status: int) -> None:
    assert _put(hub, url)[0] == status
    assert _endpoints(hub) == (1 if status == 200 else 0)


def test_delivery_to_an_allowed_local_server_lands(hub: RealHub, receivers: list[Receiver]) -> None:
    _sealed_collection(hub)
    server = Receiver(200)
    receivers.append(server)
    _register(hub, f"http://localhost:{server.port}/hook?kit=1")
    done = webhooks.deliver_webhooks(hub.factory, datetime.now(UTC), settings=hub.settings)
    assert (done.queued, done.delivered) == (1, 1)
    [got] = server.seen
    # Connected to the checked address; the request still names the URL's host.
    assert (got.method, got.path, got.host) == ("POST", "/hook?kit=1", f"localhost:{server.port}")
    assert got.body.startswith(b"hub.test/collections/")
    assert "webhook.delivered" in _actions(hub)


def test_a_redirect_is_not_followed(hub: RealHub, receivers: list[Receiver]) -> None:
    _sealed_collection(hub)
    elsewhere = Receiver(200)
    redirecting = Receiver(307, location=f"http://127.0.0.1:{elsewhere.port}/stolen")
    receivers.extend([elsewhere, redirecting])
    _register(hub, f"http://127.0.0.1:{redirecting.port}/hook")
    done = webhooks.deliver_webhooks(hub.factory, datetime.now(UTC), settings=hub.settings)
    assert (done.delivered, done.retried) == (0, 1)
    assert len(redirecting.seen) == 1 and elsewhere.seen == []
    [d] = _deliveries(hub)
    assert (d.status, d.last_status) == ("pending", 307)


@pytest.mark.parametrize("allow", [(), None], ids=["allow-list emptied", "no settings given"])
def test_a_target_refused_at_delivery_is_not_contacted(
    hub: RealHub, receivers: list[Receiver], allow: tuple[()] | None
) -> None:
    _sealed_collection(hub)
    server = Receiver(200)
    receivers.append(server)
    _register(hub, f"http://127.0.0.1:{server.port}/hook")  # allowed when registered
    rebuilt = hub.settings.replace(webhook_allow=allow) if allow is not None else None
    done = webhooks.deliver_webhooks(hub.factory, datetime.now(UTC), settings=rebuilt)
    assert (done.queued, done.delivered, done.failed) == (1, 0, 1)
    assert server.seen == []
    [d] = _deliveries(hub)
    assert (d.status, d.attempts, d.last_status) == ("failed", 0, None)
    with hub.session() as s:
        failed = [json.loads(e) for e in s.scalars(select(AuditRow.entry))]
    [entry] = [e for e in failed if e["action"] == "webhook.failed"]
    assert "127.0.0.1 is loopback" in json.dumps(entry)
    # Failed for good: a later run does not try again.
    later = webhooks.deliver_webhooks(hub.factory, datetime.now(UTC) + timedelta(hours=1), settings=rebuilt)
    assert (later.delivered, later.retried, later.failed) == (0, 0, 0) and server.seen == []


def _tls_server(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, Path]:
    """A server context whose self-signed certificate names `name`, and that certificate's file."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Valid whatever the date: OpenSSL checks validity against the real clock, even under --clock.
        .not_valid_before(datetime(2000, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(9999, 12, 31, tzinfo=UTC))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


@pytest.mark.parametrize(
    ("certified", "delivered"),
    [("localhost", True), ("elsewhere.test", False)],
    ids=["certificate for the url host", "certificate for another name"],
)
def test_https_delivery_verifies_the_url_host_on_the_pinned_address(
    hub: RealHub,
    receivers: list[Receiver],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    certified: str,
    delivered: bool,
) -> None:
    _sealed_collection(hub)
    context, cert_file = _tls_server(tmp_path, certified)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # the hub trusts this certificate, as a CA
    server = Receiver(200, tls=context)
    receivers.append(server)
    _register(hub, f"https://localhost:{server.port}/hook")
    done = webhooks.deliver_webhooks(hub.factory, datetime.now(UTC), settings=hub.settings)
    assert done.delivered == (1 if delivered else 0)
    assert "localhost" in server.server_names  # TLS server name: the URL's host, not the address
    if delivered:
        assert [s.host for s in server.seen] == [f"localhost:{server.port}"]
    else:
        assert server.seen == [] and [d.last_status for d in _deliveries(hub)] == [None]


def test_an_endpoint_stored_before_these_checks_is_refused_at_delivery(hub: RealHub, receivers: list[Receiver]) -> None:
    _sealed_collection(hub)
    server = Receiver(200)
    receivers.append(server)
    with hub.session() as s:  # as a row written by an older hub, which stored URLs unchecked
        url = f"http://127.0.0.1:{server.port}/hook\r\nX-Injected: 1"
        s.add(WebhookEndpoint(partner_id=hub.partner_id, url=url, created_at=datetime.now(UTC)))
    done = webhooks.deliver_webhooks(hub.factory, datetime.now(UTC), settings=hub.settings)
    assert (done.delivered, done.failed) == (0, 1) and server.seen == []
    assert [d.status for d in _deliveries(hub)] == ["failed"]
