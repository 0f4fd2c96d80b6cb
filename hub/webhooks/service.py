"""Signed checkpoint webhooks: a partner registers an HTTPS endpoint; the hub pushes new checkpoints to it.

The delivery is self-authenticating, so no shared secret exists: the body is the collection's latest signed
and cosigned checkpoint note (`text/plain`), which the partner kit verifies with the keys it already trusts
(docs/partner-kit.md, "Push: webhooks"). Each attempt sends the newest note, so a retry is never stale.

A second event, `dispute`, tells the disputing partner and the contributor that staff decided on a dispute
(`queue_dispute_event`, called by governance). Its body, `{"event": "dispute", "dispute": id}`, proves nothing
and says nothing more: the partner reads the dispute with its own token (GET /v1/disputes/{id}).

`deliver_webhooks(session_factory, now, post=...)` is the scheduler job: it queues one delivery per (partner,
collection, checkpoint size) when a readable collection's checkpoint grew, posts due ones, and retries failures
with exponential backoff (30 s doubling to 1 h, abandoned after a day). Final outcomes are audited.

A webhook URL is a request the hub makes on a partner's say-so, so targets are checked (SSRF): https only, and
every address the host resolves to must be globally routable, at registration and again at each delivery. The
delivery connects to the address it checked (no second lookup, so DNS rebinding cannot swap it) and follows no
redirect. Networks in `HASHFED_WEBHOOK_ALLOW` are exempt, over plain http too (tests, private deployments).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import urllib3
from sqlalchemy import (
    func,
    select,
    text,
)
from sqlalchemy.orm import Session, sessionmaker

from audit.canonical import canonical_json
from hub import rls
from hub.config import Settings
from hub.errors import NotFoundError, ValidationError
from hub.feed import batches, collections
from hub.proxies import Network
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor
from hub.webhooks.models import WebhookDelivery, WebhookEndpoint

CHECKPOINT = "checkpoint"  # the body: the collection's latest signed checkpoint note
DISPUTE = "dispute"  # the body: {"event": "dispute", "dispute": id}; the partner fetches the dispute itself
BACKOFF_FIRST_S = 30  # seconds before the first retry; doubles each attempt
BACKOFF_MAX_S = 3600  # seconds: retries never wait longer
GIVE_UP_AFTER = timedelta(days=1)
CONNECT_TIMEOUT_S = 5  # seconds to open the connection (and TLS handshake) of a delivery
READ_TIMEOUT_S = 10  # seconds of silence from the receiver before the attempt is abandoned


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Networks = tuple[Network, ...]

_CGNAT = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598 shared address space: a carrier's internal network
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address
# RFC 1123 host names, ASCII only (IDNs in their xn-- form); IP literals are parsed apart.
_HOST = re.compile(r"(?=.{1,253}\Z)[a-z0-9_][a-z0-9_-]{0,62}(?:\.[a-z0-9_][a-z0-9_-]{0,62})*\.?")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")  # no space, control character (CR, LF, NUL, ...) or non-ASCII


@dataclass(frozen=True)
class Target:
    """A checked webhook URL and the addresses a delivery may connect to: every one passed the check."""

    url: str
    scheme: str
    host: str  # the URL's host: the Host header, TLS server name and certificate name
    port: int
    path: str  # path and query, as sent in the request line
    addresses: tuple[Address, ...]


@dataclass(frozen=True)
class _Parsed:
    url: str
    scheme: str
    host: str
    port: int
    path: str
    literal: Address | None  # the host, when it is an IP literal


def _refuse(message: str) -> ValidationError:
    return ValidationError(message, errors={"url": [message]})


def _parse(url: str) -> _Parsed:
    """The URL's syntax: absolute http(s), no userinfo, no fragment, printable ASCII, a valid host and port."""
    if len(url) > 2000:
        raise _refuse("url is longer than 2000 characters")
    if not _PRINTABLE.fullmatch(url):
        # CR/LF would split a stored header line, NUL is refused by PostgreSQL text: refuse before storing.
        raise _refuse("url must be printable ASCII without spaces or control characters (percent-encode them)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise _refuse("url is not a valid absolute URL") from e
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise _refuse("url must be an absolute https URL")
    if "@" in parts.netloc:
        raise _refuse("url must not contain user information (user:password@)")
    if parts.fragment or url.endswith("#"):
        raise _refuse("url must not have a fragment")
    host = parts.hostname
    literal: Address | None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
        if not _HOST.fullmatch(host):
            raise _refuse("url host is not a valid host name") from None
    if port == 0:
        raise _refuse("url port must be 1 to 65535")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if parts.scheme == "https" else 80
    return _Parsed(url, parts.scheme, host, port or default_port, path, literal)


def _resolve(parsed: _Parsed) -> tuple[Address, ...]:
    """The host's addresses (an IP literal is its own); empty when the name does not resolve."""
    if parsed.literal is not None:
        return (parsed.literal,)
    try:
        infos = socket.getaddrinfo(parsed.host, parsed.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):  # socket.gaierror is an OSError
        return ()
    found: dict[Address, None] = {}  # ordered, without repeats
    for info in infos:
        try:
            found[ipaddress.ip_address(str(info[4][0]).split("%")[0])] = None
        except ValueError:
            continue
    return tuple(found)


def _unmapped(address: Address) -> Address:
    """::ffff:a.b.c.d is the IPv4 address a.b.c.d on a dual-stack socket."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _allowed(address: Address, allow: Networks) -> bool:
    address = _unmapped(address)
    return any(address.version == net.version and address in net for net in allow)


def refusal(address: Address) -> str | None:
    """Why a webhook may not target this address (outside the allow-list), or None when it may."""
    address = _unmapped(address)
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and (why := refusal(embedded)):
            return f"{why} (IPv4 embedded in IPv6)"
    checks = (
        (address.is_loopback, "loopback"),
        (address.is_unspecified, "unspecified"),
        (address.is_link_local, "link-local (cloud metadata lives here)"),
        (address.is_multicast, "multicast"),
        (address.version == 4 and address in _CGNAT, "shared address space (CGNAT)"),
        (address.is_reserved, "reserved"),
        (address.is_private, "private"),
        (not address.is_global, "not globally routable"),
    )
    return next((why for hit, why in checks if hit), None)


def _is_localhost(host: str) -> bool:
    name = host.rstrip(".")
    return name == "localhost" or name.endswith(".localhost")  # RFC 6761 6.3: always loopback


def _check(parsed: _Parsed, addresses: Iterable[Address], allow: Networks) -> Target:
    """Every address must be allowed or globally routable; plain http only when every one is allowed."""
    addresses = tuple(addresses)
    everywhere_allowed = bool(addresses) and all(_allowed(a, allow) for a in addresses)
    if _is_localhost(parsed.host) and not everywhere_allowed:
        raise _refuse(f"url host {parsed.host} is loopback")
    if not addresses:
        raise _refuse(f"url host {parsed.host} does not resolve")
    for address in addresses:
        why = None if _allowed(address, allow) else refusal(address)
        if why:
            shown = f"{address} is" if parsed.literal is not None else f"{parsed.host} resolves to {address}, which is"
            raise _refuse(f"url host is refused: {shown} {why}")
    if parsed.scheme != "https" and not everywhere_allowed:
        raise _refuse("webhooks are delivered over https only")
    return Target(parsed.url, parsed.scheme, parsed.host, parsed.port, parsed.path, addresses)


def check_url(url: str, allow: Networks) -> Target:
    """Parse, resolve and check a webhook URL; a refused one raises ValidationError (422) saying why."""
    parsed = _parse(url)
    return _check(parsed, _resolve(parsed), allow)


def _delivery_target(url: str, allow: Networks) -> Target | None:
    """The endpoint checked again before an attempt; None while its name does not resolve (worth a retry)."""
    parsed = _parse(url)
    addresses = _resolve(parsed)
    if not addresses and not _is_localhost(parsed.host):  # a localhost name is refused, resolving or not
        return None
    return _check(parsed, addresses, allow)


def register(
    session: Session, partner_id: str, url: str, actor: Actor, now: datetime, *, allow: Networks
) -> WebhookEndpoint:
    """Set (or replace) a partner's endpoint once its target passes `check_url`. Audited."""
    check_url(url, allow)  # before anything is written
    endpoint = session.get(WebhookEndpoint, partner_id)
    if endpoint is None:
        endpoint = WebhookEndpoint(partner_id=partner_id, url=url, created_at=now)
        session.add(endpoint)
    else:
        endpoint.url = url
    session.flush()
    auditlog.record(session, actor, "webhook.register", f"partner/{partner_id}", {"url": url}, now=now)
    return endpoint


def unregister(session: Session, partner_id: str, actor: Actor, now: datetime) -> None:
    """Remove a partner's endpoint; pending deliveries are dropped. Audited."""
    endpoint = session.get(WebhookEndpoint, partner_id)
    if endpoint is None:
        raise NotFoundError("no webhook is registered")
    session.delete(endpoint)
    for d in session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.partner_id == partner_id, WebhookDelivery.status == "pending")
    ):
        d.status, d.finished_at = "failed", now
    auditlog.record(session, actor, "webhook.unregister", f"partner/{partner_id}", {}, now=now)


def backoff(attempts: int) -> timedelta:
    """Delay before attempt `attempts + 1`."""
    return timedelta(seconds=min(BACKOFF_FIRST_S * 2 ** max(attempts - 1, 0), BACKOFF_MAX_S))


@dataclass(frozen=True)
class Delivered:
    """What one run of the job did."""

    queued: int
    delivered: int
    retried: int
    failed: int

    def __bool__(self) -> bool:
        """True when the run did anything (what a scheduler log reports)."""
        return bool(self.queued or self.delivered or self.retried or self.failed)


Post = Callable[[Target, bytes, dict[str, str]], int | None]
"""Sends one delivery to a checked target: (target, body, headers) -> HTTP status, or None when nothing answered."""


def http_post(target: Target, body: bytes, headers: dict[str, str]) -> int | None:
    """The default `Post`: connect to a checked address itself, name the URL's host (Host header, TLS SNI and
    certificate check), short timeouts, no redirect, no retry, no proxy. The next address is tried only when
    a connection could not be opened."""
    timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S)
    default_port = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    sent = {**headers, "Host": host if target.port == default_port else f"{host}:{target.port}"}
    for address in target.addresses:
        pool: urllib3.HTTPConnectionPool
        if target.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                str(address),
                target.port,
                timeout=timeout,
                retries=False,
                maxsize=1,
                cert_reqs="CERT_REQUIRED",
                server_hostname=target.host,
            )
        else:
            pool = urllib3.HTTPConnectionPool(str(address), target.port, timeout=timeout, retries=False, maxsize=1)
        try:
            response = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers=sent,
                redirect=False,
                retries=False,
                assert_same_host=False,
                preload_content=False,
            )
            response.close()  # the body is not read: the status is the whole answer
            return response.status
        except urllib3.exceptions.NewConnectionError:
            continue  # nothing listens there: try the next checked address
        except urllib3.exceptions.HTTPError:
            return None
        finally:
            pool.close()
    return None


def _pending(
    partner_id: str, event: str, collection_id: str, size: int, now: datetime, dispute_id: str | None = None
) -> WebhookDelivery:
    """A delivery due now, not yet tried."""
    return WebhookDelivery(
        id=str(uuid.uuid4()),
        partner_id=partner_id,
        event=event,
        collection_id=collection_id,
        size=size,
        dispute_id=dispute_id,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


def _queue(session: Session, now: datetime) -> int:
    queued = 0
    for endpoint in session.scalars(select(WebhookEndpoint)):
        for col in collections.visible_to(session, endpoint.partner_id):
            try:
                collections.readable(session, col.id, endpoint.partner_id)  # readers of active partners only
            except NotFoundError:
                continue
            head = batches.head(session, col.id)
            if head is None or head.size == 0:
                continue
            announced = session.scalar(
                select(func.max(WebhookDelivery.size)).where(
                    WebhookDelivery.partner_id == endpoint.partner_id,
                    WebhookDelivery.event == CHECKPOINT,
                    WebhookDelivery.collection_id == col.id,
                )
            )
            if announced is not None and announced >= head.size:
                continue
            session.add(_pending(endpoint.partner_id, CHECKPOINT, col.id, head.size, now))
            queued += 1
    session.flush()
    return queued


def queue_dispute_event(
    session: Session,
    *,
    partner_ids: Iterable[str | None],
    dispute_id: str,
    collection_id: str,
    audit_seq: int,
    now: datetime,
) -> int:
    """Tell these partners (those with an endpoint) that staff decided on a dispute; the decision's audit seq
    makes each delivery unique. The body names the dispute only: the partner reads it with its own token."""
    queued = 0
    for partner_id in sorted({p for p in partner_ids if p is not None}):
        if session.get(WebhookEndpoint, partner_id) is None:
            continue
        session.add(_pending(partner_id, DISPUTE, collection_id, audit_seq, now, dispute_id))
        queued += 1
    session.flush()
    return queued


def _body(session: Session, d: WebhookDelivery) -> tuple[bytes, str, str] | None:
    """What a delivery posts now (body, content type, audit subject); None when there is nothing to send."""
    if d.event == DISPUTE and d.dispute_id is not None:
        body = canonical_json({"event": DISPUTE, "dispute": d.dispute_id})
        return body, "application/json", f"dispute/{d.dispute_id}"
    head = batches.head(session, d.collection_id)
    if head is None:
        return None
    return head.note.encode(), "text/plain; charset=utf-8", f"collection/{d.collection_id}"


def deliver_webhooks(
    session_factory: sessionmaker[Session],
    now: datetime,
    *,
    settings: Settings | None = None,
    post: Post = http_post,
) -> Delivered:
    """Queue deliveries for grown checkpoints, then post every due one (one transaction per delivery).

    Each attempt resolves and checks the endpoint again (`settings.webhook_allow`; no settings: no allow-list)
    and posts to the checked addresses only. A refused target fails the delivery at once, without a request;
    a name that does not resolve counts as an unanswered attempt. The notes sent are already signed: this job
    needs no key.
    """
    allow: Networks = settings.webhook_allow if settings is not None else ()
    with session_factory.begin() as session:
        rls.set_tenant(session, rls.SYSTEM)
        # Two schedulers never queue the same delivery.
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext('hashfed.webhooks'))"))
        queued = _queue(session, now)
        due = list(
            session.scalars(
                select(WebhookDelivery.id)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at)
            )
        )
    delivered = retried = failed = 0
    for delivery_id in due:
        with session_factory.begin() as session:
            rls.set_tenant(session, rls.SYSTEM)
            d = session.get(WebhookDelivery, delivery_id, with_for_update=True)
            endpoint = session.get(WebhookEndpoint, d.partner_id) if d is not None else None
            sent = _body(session, d) if d is not None else None
            if d is None or d.status != "pending" or endpoint is None or sent is None:
                continue
            body, content_type, subject = sent
            headers = {"Content-Type": content_type, "Hashfed-Event": d.event, "Hashfed-Delivery": d.id}
            details: dict[str, Any] = {"partner": d.partner_id, "attempts": d.attempts}
            details["decision_audit_seq" if d.event == DISPUTE else "size"] = d.size
            try:
                target = _delivery_target(endpoint.url, allow)
            except ValidationError as e:
                d.status, d.finished_at = "failed", now
                details["reason"] = e.message
                auditlog.record(session, Actor.system("webhooks"), "webhook.failed", subject, details, now=now)
                failed += 1
                continue
            status = post(target, body, headers) if target is not None else None
            d.attempts += 1
            d.last_status = status
            details["attempts"] = d.attempts
            if target is None:
                details["reason"] = "url host does not resolve"
            if status is not None and 200 <= status < 300:
                d.status, d.finished_at = "delivered", now
                auditlog.record(session, Actor.system("webhooks"), "webhook.delivered", subject, details, now=now)
                delivered += 1
            elif now - d.created_at >= GIVE_UP_AFTER:
                d.status, d.finished_at = "failed", now
                details["last_status"] = status
                auditlog.record(session, Actor.system("webhooks"), "webhook.failed", subject, details, now=now)
                failed += 1
            else:
                d.next_attempt_at = now + backoff(d.attempts)
                retried += 1
    return Delivered(queued, delivered, retried, failed)
