"""Scheduled jobs: plain functions of (session factory, now, ...), testable without APScheduler.

Each job runs in one transaction (`with session_factory.begin()`) and, on PostgreSQL, under its own
advisory lock, so two schedulers never do the same work at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from hub import rls
from hub.config import Settings
from hub.feed import batches
from hub.governance import service as governance
from hub.identity import tokens
from hub.transparency import auditlog
from hub.transparency.keys import HubKeys


def integrate_audit_log(
    session_factory: sessionmaker[Session], now: datetime, *, keys: HubKeys
) -> auditlog.Integrated:
    """Integrate new audit entries into the stored tree and sign an audit checkpoint when it grew."""
    with session_factory.begin() as session:
        auditlog.lock_integrator(session)
        return auditlog.integrate(session, keys.audit_origin, keys.signer("audit"), now)


# --- feed (collections): sealing and checkpoint freshness --------------------------------------------------


def _sealing_signers(keys: HubKeys) -> batches.Signers:
    return batches.Signers(keys.signer("batch"), keys.signer("checkpoint"), keys.signer("timestamp"))


def seal_pending(
    session_factory: sessionmaker[Session], now: datetime, *, keys: HubKeys, settings: Settings
) -> list[batches.Sealed]:
    """Seal every collection with pending changes, one transaction per collection."""
    with session_factory() as session:
        pending = batches.collections_with_pending(session)
    out: list[batches.Sealed] = []
    for collection_id in pending:
        with session_factory.begin() as session:
            sealed = batches.seal_collection(
                session,
                collection_id,
                hub_name=keys.hub_name,
                signers=_sealing_signers(keys),
                max_entries=settings.max_batch_entries,
                now=now,
            )
        if sealed is not None:
            out.append(sealed)
    return out


def refresh_cosignatures(
    session_factory: sessionmaker[Session], now: datetime, *, keys: HubKeys, settings: Settings
) -> int:
    """Re-cosign every checkpoint older than half the cosign interval (and sign a first, empty one)."""
    stale_before = now - timedelta(seconds=settings.cosign_interval_s / 2)
    with session_factory() as session:
        due = batches.heads_due(session, stale_before)
    for collection_id in due:
        with session_factory.begin() as session:
            batches.cosign(
                session, collection_id, hub_name=keys.hub_name, signers=_sealing_signers(keys), now=now
            )
    return len(due)


# --- OAuth housekeeping -------------------------------------------------------------------------------------


def sweep_tokens(session_factory: sessionmaker[Session], now: datetime) -> int:
    """Delete access tokens expired for a day and client-assertion jtis past their replay window."""
    with session_factory.begin() as session:
        rls.set_tenant(session, rls.SYSTEM)
        return tokens.sweep(session, now)


# --- governance ---------------------------------------------------------------------------------------------


def open_flag_disputes(session_factory: sessionmaker[Session], now: datetime) -> int:
    """Open a dispute for each signal the false-positive flag marked since the last run."""
    with session_factory.begin() as session:
        return governance.open_flag_disputes(session, now)
