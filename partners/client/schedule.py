"""Scheduled syncs with APScheduler: an interval with jitter, exponential backoff on errors, `Retry-After`.

One job, re-armed after each run with the delay `next_delay` computes; pushes (webhooks) add an immediate
run for one collection. A single worker thread runs them, so two syncs never overlap in one process.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from partners.client.errors import HaltedError, HeldBatchError, PartnerError, RateLimitedError
from partners.client.sync import SyncReport

log = logging.getLogger("hashfed.partner.schedule")

BACKOFF_BASE_S = 30.0  # seconds: the first retry after an error
BACKOFF_MAX_S = 3600.0  # seconds: retries never wait longer than this (unless Retry-After says so)

SyncFn = Callable[[Sequence[str] | None], SyncReport]


def next_delay(every_s: float, failures: int, retry_after_s: float | None = None) -> float:
    """Seconds until the next run: the interval after a success, else 30 s doubling up to an hour.

    A `Retry-After` from the hub is a floor: never come back sooner than it asks.
    """
    if failures <= 0:
        delay = every_s
    else:
        delay = min(BACKOFF_BASE_S * 2 ** (failures - 1), BACKOFF_MAX_S, max(every_s, BACKOFF_BASE_S))
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


def is_transient(error: PartnerError) -> bool:
    """Errors worth retrying sooner or later; a held batch or a fork waits for an operator instead."""
    return not isinstance(error, HeldBatchError | HaltedError)


def parse_duration(text: str) -> float:
    """`90`, `30s`, `5m`, `2h` to seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        if text and text[-1] in units:
            value = float(text[:-1]) * units[text[-1]]
        else:
            value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m or 1h") from None
    if value <= 0:
        raise ValueError("a duration is positive")
    return value


class Runner:
    """Runs `sync` every `every_s` seconds (± `jitter_s`), backing off on errors."""

    def __init__(
        self,
        sync: SyncFn,
        every_s: float,
        jitter_s: float = 0.0,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.sync = sync
        self.every_s = every_s
        self.jitter_s = jitter_s
        self.failures = 0
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        self.stopped = threading.Event()

    def start(self) -> None:
        """Start the scheduler with a first run now."""
        self.scheduler.start()
        self._arm(0.0)

    def stop(self) -> None:
        """Stop after the running sync, if any."""
        self.stopped.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def wait(self) -> None:
        """Block until `stop` (or Ctrl-C)."""
        try:
            while not self.stopped.wait(1.0):
                pass
        except KeyboardInterrupt:
            self.stop()

    def trigger(self, collection: str) -> None:
        """Sync one collection as soon as the worker is free (a webhook said it has a new checkpoint)."""
        self.scheduler.add_job(
            self._run_push,
            "date",
            run_date=datetime.now(UTC),
            args=[collection],
            id=f"push:{collection}",
            replace_existing=True,
        )

    def _arm(self, delay: float) -> None:
        jitter = self.rng.uniform(0, self.jitter_s) if self.jitter_s and delay else 0.0
        self.scheduler.add_job(
            self._run,
            "date",
            run_date=datetime.now(UTC) + timedelta(seconds=delay + jitter),
            id="sync",
            replace_existing=True,
        )

    def run_once(self, collections: Sequence[str] | None = None) -> float:
        """One sync; update the failure count and return the delay before the next run."""
        try:
            report = self.sync(collections)
            errors = report.errors()
        except PartnerError as e:  # the sync itself journals per-collection errors; this is the rest
            errors = [e]
        transient = [e for e in errors if is_transient(e)]
        retry_after = max(
            (e.retry_after for e in transient if isinstance(e, RateLimitedError) and e.retry_after),
            default=None,
        )
        self.failures = self.failures + 1 if transient else 0
        delay = next_delay(self.every_s, self.failures, retry_after)
        log.info(
            "sync run finished",
            extra={
                "event": "run",
                "errors": len(errors),
                "failures": self.failures,
                "next_in_s": round(delay, 1),
            },
        )
        return delay

    def _run(self) -> None:
        if self.stopped.is_set():
            return
        delay = self.run_once()
        if not self.stopped.is_set():
            self._arm(delay)

    def _run_push(self, collection: str) -> None:
        if not self.stopped.is_set():
            self.run_once([collection])
