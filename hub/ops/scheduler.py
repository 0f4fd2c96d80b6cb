"""The scheduler process: APScheduler running the hub's jobs (`hashfed scheduler`, or in-process embedded).

Every job is a plain function of (session factory, now) in hub/ops/jobs.py; this module only times them. Keys
are loaded at each run, so a rotation (`hashfed keys rotate`) takes effect without a restart. Two
schedulers may run: each job takes its own advisory lock on PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy.orm import Session, sessionmaker

from hub.config import Settings
from hub.db import make_engine, make_session_factory, utcnow
from hub.errors import HubError
from hub.ops import jobs
from hub.transparency.keys import HubKeys
from hub.upstreams import pull as upstream_pulls
from hub.web import state
from hub.webhooks import service as webhooks

log = logging.getLogger(__name__)

# Webhook deliveries are tried this often; each delivery's own backoff decides whether it is due.
WEBHOOK_INTERVAL_S = 30
# Flagged signals get their dispute within a minute.
FLAG_DISPUTES_INTERVAL_S = 60


def _runner(
    name: str,
    job: Callable[..., Any],
    factory: sessionmaker[Session],
    settings: Settings,
    *,
    with_settings: bool,
    with_keys: bool = True,
) -> Callable[[], None]:
    def run() -> None:
        try:
            kwargs: dict[str, Any] = {}
            if with_keys:
                with factory() as session:
                    kwargs["keys"] = HubKeys.load(settings, session)
            if with_settings:
                kwargs["settings"] = settings
            result = job(factory, utcnow(), **kwargs)
            if result:
                log.info("%s: %s", name, result)
        except HubError as e:
            log.error("%s skipped: %s", name, e.message)
        except Exception:
            log.exception("%s failed", name)

    run.__name__ = run.__qualname__ = name  # how APScheduler names the job in its log
    return run


def plan(settings: Settings) -> list[tuple[str, Callable[..., Any], int, bool, bool]]:
    """The jobs: (name, job, interval in seconds, takes settings, takes keys)."""
    return [
        ("seal_pending", jobs.seal_pending, settings.seal_interval_s, True, True),
        ("refresh_cosignatures", jobs.refresh_cosignatures, max(1, settings.cosign_interval_s // 2), True, True),
        ("integrate_audit_log", jobs.integrate_audit_log, settings.audit_checkpoint_interval_s, False, True),
        ("deliver_webhooks", webhooks.deliver_webhooks, WEBHOOK_INTERVAL_S, True, False),
        ("sweep_tokens", jobs.sweep_tokens, 3600, False, False),
        ("open_flag_disputes", jobs.open_flag_disputes, FLAG_DISPUTES_INTERVAL_S, False, False),
        ("pull_upstreams", upstream_pulls.pull_upstreams, settings.upstream_interval_s, True, False),
    ]


def add_jobs(
    scheduler: BaseScheduler, factory: sessionmaker[Session], settings: Settings, *, run_now: bool = True
) -> list[Callable[[], None]]:
    """Schedule sealing, cosignatures, audit integration, webhook deliveries and token sweeps.

    With `run_now` each job first runs when the scheduler starts; without it, one interval later (the caller
    runs them first itself). Returns the jobs' runners in plan order."""
    runners = []
    now = utcnow()
    for name, job, seconds, with_settings, with_keys in plan(settings):
        runner = _runner(name, job, factory, settings, with_settings=with_settings, with_keys=with_keys)
        scheduler.add_job(
            runner,
            "interval",
            seconds=seconds,
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            next_run_time=now if run_now else now + timedelta(seconds=seconds),
        )
        runners.append(runner)
    return runners


def run_forever(settings: Settings) -> None:
    """`hashfed scheduler`: block, running the jobs until interrupted."""
    engine = make_engine(settings.database_url)
    scheduler = BlockingScheduler(timezone="UTC")
    add_jobs(scheduler, make_session_factory(engine), settings)
    log.info(
        "scheduler started: seal every %ss, cosign every %ss",
        settings.seal_interval_s,
        settings.cosign_interval_s // 2,
    )
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        engine.dispose()


def start_embedded(app: Any, settings: Settings) -> BackgroundScheduler:
    """For `hashfed serve` on the embedded default: the single embedded process runs the jobs in a background thread."""
    scheduler = BackgroundScheduler(timezone="UTC", daemon=True)
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # APScheduler logs every run at INFO; in the one embedded process that buries the start-up banner.
        # The jobs log what they did themselves.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # Each job runs once here, in order, before the hub answers: start-up work is done and logged first.
    for runner in add_jobs(scheduler, state(app).session_factory, settings, run_now=False):
        runner()
    scheduler.start()
    return scheduler
