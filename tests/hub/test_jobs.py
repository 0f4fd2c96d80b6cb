"""Scheduled jobs run as plain functions of (session factory, now), without APScheduler."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from hub.db import utcnow
from hub.identity.models import AccessToken, UsedJti
from hub.identity.tokens import token_digest
from hub.ops.jobs import sweep_tokens
from hub.ops.scheduler import add_jobs, plan
from tests.hub import factories as f


def test_sweep_tokens_deletes_only_what_can_no_longer_be_used(session, session_factory):
    platform = f.partner(session)
    live = f.token(session, platform, ["feed:read"], ttl_s=600)
    expired_recently = f.token(session, platform, ["feed:read"], ttl_s=600)
    expired_long_ago = f.token(session, platform, ["feed:read"], ttl_s=600)
    now = utcnow()
    for value, ago in ((expired_recently, timedelta(hours=2)), (expired_long_ago, timedelta(days=3))):
        session.get(AccessToken, token_digest(value)).expires_at = now - ago
    session.add(UsedJti(client_id="c", jti="old", expires_at=now - timedelta(minutes=1)))
    session.add(UsedJti(client_id="c", jti="new", expires_at=now + timedelta(minutes=30)))
    session.commit()

    assert sweep_tokens(session_factory, now) == 1

    f.as_system(session)
    left = set(session.scalars(select(AccessToken.digest)))
    assert token_digest(live) in left and token_digest(expired_recently) in left
    assert token_digest(expired_long_ago) not in left
    assert set(session.scalars(select(UsedJti.jti))) == {"new"}


def test_the_scheduler_plans_every_job(settings, session_factory):
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone="UTC")
    add_jobs(scheduler, session_factory, settings)
    assert {job.id for job in scheduler.get_jobs()} >= {
        "seal_pending", "refresh_cosignatures", "integrate_audit_log", "deliver_webhooks", "sweep_tokens",
    }
    # Deliveries get the settings, so HASHFED_WEBHOOK_ALLOW reaches the scheduled job.
    takes_settings = {name: with_settings for name, _job, _s, with_settings, _k in plan(settings)}
    assert takes_settings["deliver_webhooks"] and takes_settings["seal_pending"]


def test_an_idle_run_reports_nothing_to_the_scheduler_log():
    """The embedded hub logs a job's result only when it did something: the start-up banner stays visible."""
    from hub.transparency.auditlog import Integrated
    from hub.webhooks.service import Delivered

    assert not Integrated(old_size=3, size=3, checkpoint=None)
    assert Integrated(old_size=3, size=4, checkpoint=None) and Integrated(3, 3, "note")
    assert not Delivered(queued=0, delivered=0, retried=0, failed=0)
    assert Delivered(queued=0, delivered=0, retried=1, failed=0)
