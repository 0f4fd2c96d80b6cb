"""`/metrics`: Prometheus text format from a registry of this app's own (never the global one), for a bearer
token with scope `metrics:read` (an operator's scrape client; 401 without one, 403 with another scope).

Feed gauges are read from the database at scrape time (pending changes, seal and cosignature ages,
batches, signals by status, audit log size and checkpoint age); request counts and latencies by route
are counted in-process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from hub import rls
from hub.db import utcnow
from hub.feed import signals
from hub.feed.models import Batch, Collection, CollectionHead
from hub.identity.auth import require_scope
from hub.transparency import auditlog
from hub.transparency.models import AuditEntry

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class FeedCollector(Collector):
    """Reads the feed's state from the database on each scrape."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory

    def describe(self) -> list[Any]:
        return []  # read at scrape time only; registering must not touch the database

    def collect(self) -> Iterator[Any]:
        try:
            yield from self._collect()
        except SQLAlchemyError:
            log.exception("feed metrics unavailable")

    def _collect(self) -> Iterator[Any]:
        now = utcnow()
        with self.session_factory() as s:
            # Counts over every partner's rows: with no tenant, row-level security would show no signal at all.
            rls.set_tenant(s, rls.SYSTEM)
            slugs = dict(s.execute(select(Collection.id, Collection.slug)).all())
            pending = GaugeMetricFamily(
                "hashfed_pending_changes", "changes waiting to be sealed", labels=["collection"]
            )
            counts = signals.pending_counts(s)
            for cid, slug in slugs.items():
                pending.add_metric([slug], counts.get(cid, 0))
            yield pending
            seal_age = GaugeMetricFamily(
                "hashfed_seconds_since_seal", "since the last seal", labels=["collection"]
            )
            cosign_age = GaugeMetricFamily(
                "hashfed_seconds_since_cosignature",
                "age of the newest checkpoint cosignature",
                labels=["collection"],
            )
            for head in s.scalars(select(CollectionHead)):
                slug = slugs.get(head.collection_id, head.collection_id)
                if head.sealed_at is not None:
                    seal_age.add_metric([slug], (now - head.sealed_at).total_seconds())
                cosign_age.add_metric([slug], (now - head.cosigned_at).total_seconds())
            yield seal_age
            yield cosign_age
            sealed = CounterMetricFamily("hashfed_batches_sealed", "batches sealed", labels=["collection"])
            rows = s.execute(
                select(Batch.collection_id, func.count()).group_by(Batch.collection_id)
            )
            for cid, n in rows:
                sealed.add_metric([slugs.get(cid, cid)], n)
            yield sealed
            by_status = GaugeMetricFamily("hashfed_signals", "signals by status", labels=["status"])
            for status, n in signals.status_counts(s).items():
                by_status.add_metric([status], n)
            yield by_status
            size = s.scalar(select(func.count()).select_from(AuditEntry)) or 0
            yield GaugeMetricFamily("hashfed_audit_entries", "audit log entries", value=size)
            latest = auditlog.latest_checkpoint(s)
            if latest is not None:
                yield GaugeMetricFamily(
                    "hashfed_audit_checkpoint_age_seconds",
                    "age of the latest audit checkpoint",
                    value=(now - latest.created_at).total_seconds(),
                )


def init_app(app: Flask, session_factory: sessionmaker[Session]) -> CollectorRegistry:
    """Attach a registry, request instrumentation and the `/metrics` route to `app`."""
    registry = CollectorRegistry()
    registry.register(FeedCollector(session_factory))
    requests = Counter(
        "hashfed_http_requests", "HTTP requests", ["route", "method", "status"], registry=registry
    )
    latency = Histogram(
        "hashfed_http_request_seconds", "HTTP request latency", ["route", "method"], registry=registry
    )

    @app.before_request
    def _start() -> None:
        g.hashfed_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        requests.labels(route, request.method, str(response.status_code)).inc()
        started = g.get("hashfed_started")
        if started is not None:
            latency.labels(route, request.method).observe(time.perf_counter() - started)
        return response

    # Labels name every collection (slugs partners may not know of) and the counts show who is busy: an
    # operator's scrape token only (a governance client with `metrics:read`), as Prometheus sends a bearer token.
    @require_scope("metrics:read")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE)

    app.add_url_rule("/metrics", "metrics", metrics)
    return registry
