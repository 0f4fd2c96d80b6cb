"""Signed checkpoint webhooks: a partner registers an HTTPS endpoint; the hub pushes new checkpoints to it.

The delivery is self-authenticating, so no shared secret exists: the body is the collection's latest signed
and cosigned checkpoint note (`text/plain`), which the partner kit verifies with the keys it already trusts
(docs/partner-kit.md, "Push: webhooks"). Each attempt sends the newest note, so a retry is never stale.

`deliver_webhooks(session_factory, now, post=...)` is the scheduler job: it queues one delivery per (partner,
collection, checkpoint size) when a readable collection's checkpoint grew, posts due ones, and retries failures
with exponential backoff (30 s doubling to 1 h, abandoned after a day). Final outcomes are audited.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    select,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from hub import auditlog, batches, collections, rls
from hub.auditlog import Actor
from hub.auth import current_principal, is_loopback, require_scope
from hub.db import Base, UTCDateTime, utcnow
from hub.errors import NotFoundError, ValidationError
from hub.web import db

BACKOFF_FIRST_S = 30  # seconds before the first retry; doubles each attempt
BACKOFF_MAX_S = 3600  # seconds: retries never wait longer
GIVE_UP_AFTER = timedelta(days=1)
POST_TIMEOUT_S = 10  # seconds per delivery attempt


class WebhookEndpoint(Base):
    """A partner's webhook URL (one per partner)."""

    __tablename__ = "webhook_endpoints"

    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """One checkpoint announced to one partner, with its attempts."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("partner_id", "collection_id", "size"),
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # also the Hashfed-Delivery header
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"))
    collection_id: Mapped[str] = mapped_column(String(36))
    size: Mapped[int] = mapped_column(BigInteger)  # the checkpoint size that triggered it
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)  # HTTP status, None: no answer
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


def check_url(url: str) -> str:
    """HTTPS only; plain HTTP only to a loopback address (tests, a local kit)."""
    parts = urlsplit(url)
    if not parts.hostname or parts.scheme not in ("https", "http") or len(url) > 2000:
        raise ValidationError("url must be an absolute https URL", errors={"url": ["https://host/path"]})
    if parts.scheme == "http" and not (is_loopback(parts.hostname) or parts.hostname == "localhost"):
        raise ValidationError("webhooks are delivered over HTTPS only", errors={"url": ["use https"]})
    return url


def register(session: Session, partner_id: str, url: str, actor: Actor, now: datetime) -> WebhookEndpoint:
    """Set (or replace) a partner's endpoint. Audited."""
    endpoint = session.get(WebhookEndpoint, partner_id)
    if endpoint is None:
        endpoint = WebhookEndpoint(partner_id=partner_id, url=check_url(url), created_at=now)
        session.add(endpoint)
    else:
        endpoint.url = check_url(url)
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


Post = Callable[[str, bytes, dict[str, str]], int | None]
"""Sends one delivery: (url, body, headers) -> HTTP status, or None when nothing answered."""


def http_post(url: str, body: bytes, headers: dict[str, str]) -> int | None:
    """The default `Post`: requests, a short timeout, no redirects."""
    import requests

    try:
        return requests.post(url, data=body, headers=headers, timeout=POST_TIMEOUT_S, allow_redirects=False).status_code
    except requests.RequestException:
        return None


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
                    WebhookDelivery.partner_id == endpoint.partner_id, WebhookDelivery.collection_id == col.id
                )
            )
            if announced is not None and announced >= head.size:
                continue
            session.add(
                WebhookDelivery(
                    id=str(uuid.uuid4()),
                    partner_id=endpoint.partner_id,
                    collection_id=col.id,
                    size=head.size,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
            queued += 1
    session.flush()
    return queued


def deliver_webhooks(
    session_factory: sessionmaker[Session], now: datetime, *, post: Post = http_post
) -> Delivered:
    """Queue deliveries for grown checkpoints, then post every due one (one transaction per delivery).

    The notes sent are already signed: this job needs no key.
    """
    with session_factory.begin() as session:
        rls.set_tenant(session, rls.SYSTEM)
        if session.get_bind().dialect.name == "postgresql":  # two schedulers never queue the same delivery
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
            head = batches.head(session, d.collection_id) if d is not None else None
            if d is None or d.status != "pending" or endpoint is None or head is None:
                continue
            headers = {
                "Content-Type": "text/plain; charset=utf-8",
                "Hashfed-Event": "checkpoint",
                "Hashfed-Delivery": d.id,
            }
            status = post(endpoint.url, head.note.encode(), headers)
            d.attempts += 1
            d.last_status = status
            subject = f"collection/{d.collection_id}"
            details: dict[str, Any] = {"partner": d.partner_id, "size": d.size, "attempts": d.attempts}
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


# --- routes ------------------------------------------------------------------------------------------------

blp = Blueprint("webhooks", __name__, description="Checkpoint webhooks (push) to a partner's endpoint")


class WebhookSchema(Schema):
    url = fields.String(required=True, metadata={"description": "https URL the hub POSTs checkpoint notes to"})


class WebhookOutSchema(Schema):
    url = fields.String()
    created_at = fields.DateTime()


@blp.route("/v1/webhooks", methods=["PUT"])
@require_scope("feed:read")
@blp.arguments(WebhookSchema)
@blp.response(200, WebhookOutSchema)
@blp.alt_response(422, description="not an https URL")
def put_webhook(args: dict[str, Any]) -> WebhookEndpoint:
    """Register (or replace) this partner's webhook endpoint."""
    p = current_principal()
    return register(db(), p.partner_id, args["url"], p.actor(), utcnow())


@blp.route("/v1/webhooks", methods=["GET"])
@require_scope("feed:read")
@blp.response(200, WebhookOutSchema)
@blp.alt_response(404, description="no webhook registered")
def get_webhook() -> WebhookEndpoint:
    """This partner's webhook endpoint."""
    endpoint = db().get(WebhookEndpoint, current_principal().partner_id)
    if endpoint is None:
        raise NotFoundError("no webhook is registered")
    return endpoint


@blp.route("/v1/webhooks", methods=["DELETE"])
@require_scope("feed:read")
@blp.response(204)
@blp.alt_response(404, description="no webhook registered")
def delete_webhook() -> None:
    """Stop webhooks to this partner."""
    p = current_principal()
    unregister(db(), p.partner_id, p.actor(), utcnow())
