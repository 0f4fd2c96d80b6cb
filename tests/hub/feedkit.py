"""Builders for the feed tests: partners, a hub's keys, collections, and submissions."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from hub import rls
from hub.config import Settings
from hub.feed import batches, collections, signals
from hub.feed.models import Access, Collection
from hub.identity.models import Partner
from hub.transparency.auditlog import Actor
from hub.transparency.keys import HubKeys
from tests.hub.auditkit import make_hub_keys

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def partner(session: Session, name: str | None = None, kind: str = "platform") -> Partner:
    row = Partner(name=name or f"partner-{secrets.token_hex(4)}", kind=kind, created_at=T0)
    session.add(row)
    session.flush()
    return row


def hub_keys(session: Session, settings: Settings) -> HubKeys:
    """The hub's keys; the test's transaction acts as SYSTEM (an operator) from here on (RLS on PostgreSQL)."""
    rls.set_tenant(session, rls.SYSTEM)
    return make_hub_keys(session, settings, T0)[0]


def sealing_signers(keys: HubKeys) -> batches.Signers:
    return batches.Signers(keys.signer("batch"), keys.signer("checkpoint"), keys.signer("timestamp"))


def actor_of(p: Partner) -> Actor:
    return Actor(type="partner", partner=p.id, client="test-client")


def collection(
    session: Session,
    keys: HubKeys,
    owner: Partner,
    *,
    slug: str | None = None,
    types: tuple[str, ...] = ("pdq", "md5", "sha256"),
    min_quality: int = 50,
) -> Collection:
    return collections.create_collection(
        session,
        slug=slug or f"ncii-{secrets.token_hex(3)}",
        owner_id=owner.id,
        category="ncii",
        signal_types=types,
        pdq_threshold=31,
        min_quality=min_quality,
        actor=Actor.operator(),
        hub_name=keys.hub_name,
        signer=keys.signer("collection"),
        now=T0,
    )


def grant(
    session: Session,
    keys: HubKeys,
    c: Collection,
    p: Partner,
    access: Access = Access.READER,
    *,
    granted: bool = True,
    now: datetime | None = None,
) -> Collection:
    """Grant (or, with `granted=False`, revoke) `p`'s read or contribute access to `c`, as the operator."""
    return collections.set_access(
        session, c.id, p.id, access, granted, actor=Actor.operator(), hub_name=keys.hub_name,
        signer=keys.signer("collection"), now=now,
    )


def pdq() -> str:
    return secrets.token_hex(32)


# Keys the digests of case references in tests that submit through this kit.
HUB_SECRET = bytes(range(32))


def submit(session: Session, c: Collection, p: Partner, items: list[dict]) -> signals.Submitted:
    # As SYSTEM: a test's requests share its transaction and leave their partner as the tenant.
    rls.set_tenant(session, rls.SYSTEM)
    return signals.submit(
        session,
        collection_id=c.id,
        partner_id=p.id,
        items=items,
        actor=actor_of(p),
        hub_secret=HUB_SECRET,
        now=T0,
    )


def seal(
    session: Session, keys: HubKeys, *, max_entries: int = 50_000, now: datetime = T0
) -> list[batches.Sealed]:
    out = []
    for cid in batches.collections_with_pending(session):
        sealed = batches.seal_collection(
            session,
            cid,
            hub_name=keys.hub_name,
            signers=sealing_signers(keys),
            max_entries=max_entries,
            now=now,
        )
        if sealed is not None:
            out.append(sealed)
    return out
