"""Builders for the report tests: a sealed collection two partners read, tokens, and report bodies."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.config import Settings
from hub.feed.models import Collection
from hub.identity.models import Partner
from hub.reports.models import Report, ReportOutcome, SignalFlag
from hub.transparency.auditlog import Actor
from hub.transparency.keys import HubKeys
from hub.transparency.models import AuditEntry
from tests.hub import factories as f
from tests.hub import feedkit as kit

SCOPE = ["reports:write"]


@dataclass
class World:
    """A collection sealed twice (signals 0-1 in seq 1, signal 2 in seq 2), one unreadable collection."""

    keys: HubKeys
    owner: Partner
    a: Partner
    b: Partner
    c: Collection
    other: Collection  # A and B may not read it
    signals: list[str]  # ids in c
    values: list[str]  # their pdq values
    other_signal: str
    token_a: str
    token_b: str
    # One matched_at for every report of a test: a body built twice must be the same body.
    matched: datetime = field(default_factory=lambda: now() - timedelta(hours=1))


def grant(session: Session, keys: HubKeys, c: Collection, p: Partner) -> None:
    kit.grant(session, keys, c, p, now=kit.T0)


def build(session: Session, settings: Settings) -> World:
    keys = kit.hub_keys(session, settings)
    owner = kit.partner(session, "owner")
    a = f.partner(session, name="partner-a")
    b = f.partner(session, name="partner-b")
    c = kit.collection(session, keys, owner)
    other = kit.collection(session, keys, owner)
    values = [kit.pdq() for _ in range(3)]
    first = kit.submit(session, c, owner, [{"type": "pdq", "value": v} for v in values[:2]])
    hidden = kit.submit(session, other, owner, [{"type": "pdq", "value": kit.pdq()}])
    kit.seal(session, keys)
    second = kit.submit(session, c, owner, [{"type": "pdq", "value": values[2]}])
    kit.seal(session, keys, now=kit.T0 + timedelta(minutes=1))
    for p in (a, b):
        grant(session, keys, c, p)
    session.flush()
    return World(
        keys, owner, a, b, c, other, first.body["ids"] + second.body["ids"], values, hidden.body["ids"][0],
        f.token(session, a, SCOPE), f.token(session, b, SCOPE),
    )


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def t(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def item(w: World, rid: str, i: int = 0, **overrides: Any) -> dict[str, Any]:
    """A valid pending_review report of signal i of w.c, matched an hour ago."""
    body: dict[str, Any] = {
        "id": rid,
        "signal": {"id": w.signals[i]},
        "collection": w.c.id,
        "seq": 2,
        "distance": 4,
        "outcome": "pending_review",
        "matched_at": t(w.matched),
        "automated_detection": True,
        "automated_decision": True,
        "surface": "upload",
        "content_ref": f"post-{rid}",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def counts(session: Session) -> tuple[int, int, int, int]:
    f.as_system(session)
    return tuple(  # type: ignore[return-value]
        session.scalar(select(func.count()).select_from(table))
        for table in (Report, ReportOutcome, AuditEntry, SignalFlag)
    )


def victim_report(session: Session, settings: Settings, victim: Partner) -> str:
    """A report of `victim` (for the isolation walk): its id, which no other partner may see or change."""
    from hub.reports import service

    keys = kit.hub_keys(session, settings)
    owner = kit.partner(session, f"owner-{victim.id[:8]}")
    c = kit.collection(session, keys, owner)
    ids = kit.submit(session, c, owner, [{"type": "pdq", "value": kit.pdq()}]).body["ids"]
    kit.seal(session, keys)
    grant(session, keys, c, victim)
    rid = f"victim-report-{victim.id[:8]}"
    body = {
        "id": rid, "signal": {"id": ids[0]}, "collection": c.id, "seq": 1, "distance": 0,
        "outcome": "pending_review", "matched_at": t(now()), "automated_detection": True,
        "automated_decision": True, "surface": "upload", "content_ref": "victim-post",
    }
    service.submit(
        session, partner_id=victim.id, items=[body], actor=Actor(type="partner", partner=victim.id),
        hub_secret=f.hub_secret(settings), flag_threshold=3,
    )
    session.flush()
    return rid
