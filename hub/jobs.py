"""Scheduled jobs: plain functions of (session factory, now, ...), testable without APScheduler.

Each job runs in one transaction (`with session_factory.begin()`) and, on PostgreSQL, under its own
advisory lock, so two schedulers never do the same work at once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from hub import auditlog
from hub.keys import HubKeys


def integrate_audit_log(
    session_factory: sessionmaker[Session], now: datetime, *, keys: HubKeys
) -> auditlog.Integrated:
    """Integrate new audit entries into the stored tree and sign an audit checkpoint when it grew."""
    with session_factory.begin() as session:
        auditlog.lock_integrator(session)
        return auditlog.integrate(session, keys.audit_origin, keys.signer("audit"), now)
