"""Collections ("banks"): who owns, reads and contributes to a set of signals, and its signed descriptor.

A collection's descriptor (`application/vnd.hashfed.collection.v1+json`, role `collection`) carries the
settings the partner kit must take only from a signed document: signal types, PDQ threshold, minimum
quality and the vPDQ match percentage P. Every change (creation, settings, readers, contributors) is
audited and re-signs the descriptor. Readers see the collection and its feed; contributors may submit to
it; anyone else gets a 404.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.dsse import sign_envelope
from audit.payloads import CollectionDescriptor
from audit.signing import Signer
from hub.db import utcnow
from hub.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from hub.feed.models import DEFAULT_VPDQ_PERCENT, FEED_TYPES, Access, Collection, CollectionMember
from hub.identity.models import Partner, PartnerStatus
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor

SIGNAL_TYPES = FEED_TYPES  # what the feed takes (docs/formats.md)
DEFAULT_SIGNAL_TYPES = ("pdq", "md5", "sha256")  # a collection takes video types only when it asks for them
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_CATEGORY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def origin(hub_name: str, collection_id: str) -> str:
    """The origin (and note key name) of a collection's log: `<hub>/collections/<id>`."""
    return f"{hub_name}/collections/{collection_id}"


def descriptor_of(collection: Collection, hub_name: str) -> CollectionDescriptor:
    return CollectionDescriptor(
        id=collection.id,
        slug=collection.slug,
        category=collection.category,
        origin=origin(hub_name, collection.id),
        signal_types=collection.types,
        pdq_threshold=collection.pdq_threshold,
        min_quality=collection.min_quality,
        vpdq_percent=collection.vpdq_percent,
    )


def _sign(collection: Collection, hub_name: str, signer: Signer, audit_seq: int) -> None:
    payload = descriptor_of(collection, hub_name).to_bytes()
    collection.descriptor = sign_envelope(CollectionDescriptor.PAYLOAD_TYPE, payload, [signer]).to_json()
    collection.descriptor_version = (collection.descriptor_version or 0) + 1
    collection.descriptor_audit_seq = audit_seq


def _check_settings(
    signal_types: Sequence[str], pdq_threshold: int, min_quality: int, vpdq_percent: int = DEFAULT_VPDQ_PERCENT
) -> list[str]:
    problems = []
    if isinstance(vpdq_percent, bool) or not isinstance(vpdq_percent, int) or not 1 <= vpdq_percent <= 100:
        problems.append("vpdq_percent must be an integer between 1 and 100")
    if not signal_types or any(t not in SIGNAL_TYPES for t in signal_types):
        problems.append(f"signal_types must be a non-empty subset of {', '.join(SIGNAL_TYPES)}")
    if not 0 <= pdq_threshold <= 256:
        problems.append("pdq_threshold must be between 0 and 256")
    if not 0 <= min_quality <= 100:
        problems.append("min_quality must be between 0 and 100")
    return problems


def _partner(session: Session, partner_id: str) -> Partner:
    partner = session.get(Partner, partner_id)
    if partner is None:
        raise NotFoundError(f"no partner {partner_id}")
    return partner


def _member(collection_id: str, partner_id: str, access: Access, now: datetime, audit_seq: int) -> CollectionMember:
    """A grant of `access`, recorded by audit entry `audit_seq`."""
    return CollectionMember(
        collection_id=collection_id, partner_id=partner_id, access=access.value, granted_at=now, audit_seq=audit_seq
    )


def create_collection(
    session: Session,
    *,
    slug: str,
    owner_id: str,
    category: str,
    signal_types: Sequence[str],
    pdq_threshold: int,
    min_quality: int,
    actor: Actor,
    hub_name: str,
    signer: Signer,
    description: str = "",
    vpdq_percent: int = DEFAULT_VPDQ_PERCENT,
    now: datetime | None = None,
) -> Collection:
    """Create a collection; its owner becomes a reader and a contributor. Audited, descriptor signed."""
    now = now or utcnow()
    problems = _check_settings(signal_types, pdq_threshold, min_quality, vpdq_percent)
    if not _SLUG.match(slug):
        problems.append("slug must be 1-63 lowercase letters, digits and dashes")
    if not _CATEGORY.match(category):
        problems.append("category must be 1-32 lowercase letters, digits, '-' and '_'")
    if problems:
        raise ValidationError("invalid collection", errors={"collection": problems})
    _partner(session, owner_id)
    if session.scalar(select(Collection.id).where(Collection.slug == slug)) is not None:
        raise ConflictError(f"a collection with slug {slug!r} exists")
    types = [t for t in SIGNAL_TYPES if t in signal_types]
    collection = Collection(
        id=str(uuid.uuid4()),
        slug=slug,
        owner_id=owner_id,
        category=category,
        signal_types=",".join(types),
        pdq_threshold=pdq_threshold,
        min_quality=min_quality,
        vpdq_percent=vpdq_percent,
        descriptor_version=0,
        created_at=now,
        description=description,
    )
    rec = auditlog.record(
        session,
        actor,
        "collection.create",
        f"collection/{collection.id}",
        {
            "slug": slug,
            "owner": owner_id,
            "category": category,
            "signal_types": types,
            "pdq_threshold": pdq_threshold,
            "min_quality": min_quality,
            "vpdq_percent": vpdq_percent,
        },
        now=now,
    )
    _sign(collection, hub_name, signer, rec.seq)
    session.add(collection)
    session.flush()
    for access in Access:
        session.add(_member(collection.id, owner_id, access, now, rec.seq))
    session.flush()
    return collection


def update_settings(
    session: Session,
    collection_id: str,
    *,
    actor: Actor,
    hub_name: str,
    signer: Signer,
    pdq_threshold: int | None = None,
    min_quality: int | None = None,
    signal_types: Sequence[str] | None = None,
    vpdq_percent: int | None = None,
    now: datetime | None = None,
) -> Collection:
    """Change a collection's matching settings; audited and re-signed."""
    collection = get(session, collection_id, for_update=True)
    new_types = list(signal_types) if signal_types is not None else list(collection.types)
    new_threshold = collection.pdq_threshold if pdq_threshold is None else pdq_threshold
    new_quality = collection.min_quality if min_quality is None else min_quality
    new_percent = collection.vpdq_percent if vpdq_percent is None else vpdq_percent
    problems = _check_settings(new_types, new_threshold, new_quality, new_percent)
    if problems:
        raise ValidationError("invalid collection settings", errors={"collection": problems})
    types = [t for t in SIGNAL_TYPES if t in new_types]
    rec = auditlog.record(
        session,
        actor,
        "collection.update",
        f"collection/{collection.id}",
        {
            "signal_types": types,
            "pdq_threshold": new_threshold,
            "min_quality": new_quality,
            "vpdq_percent": new_percent,
        },
        now=now,
    )
    collection.signal_types = ",".join(types)
    collection.pdq_threshold = new_threshold
    collection.min_quality = new_quality
    collection.vpdq_percent = new_percent
    _sign(collection, hub_name, signer, rec.seq)
    session.flush()
    return collection


def set_access(
    session: Session,
    collection_id: str,
    partner_id: str,
    access: Access,
    granted: bool,
    *,
    actor: Actor,
    hub_name: str,
    signer: Signer,
    now: datetime | None = None,
) -> Collection:
    """Grant or revoke a partner's read or contribute access; audited, and the descriptor is re-signed."""
    now = now or utcnow()
    collection = get(session, collection_id, for_update=True)
    _partner(session, partner_id)
    row = session.get(CollectionMember, (collection.id, partner_id, access.value))
    if granted == (row is not None):
        return collection  # nothing changes: no entry, no new descriptor
    rec = auditlog.record(
        session,
        actor,
        f"collection.{access.value}.{'grant' if granted else 'revoke'}",
        f"collection/{collection.id}",
        {"partner": partner_id},
        now=now,
    )
    if granted:
        session.add(_member(collection.id, partner_id, access, now, rec.seq))
    else:
        session.delete(row)
    _sign(collection, hub_name, signer, rec.seq)
    session.flush()
    return collection


def get(session: Session, collection_id: str, *, for_update: bool = False) -> Collection:
    """A collection by id or slug (operators and jobs; partners go through `readable`)."""
    query = select(Collection).where((Collection.id == collection_id) | (Collection.slug == collection_id))
    if for_update:
        query = query.with_for_update()
    collection = session.scalars(query).first()
    if collection is None:
        raise NotFoundError("no such collection")
    return collection


def access_of(session: Session, collection_id: str, partner_id: str) -> set[str]:
    rows = session.scalars(
        select(CollectionMember.access).where(
            CollectionMember.collection_id == collection_id, CollectionMember.partner_id == partner_id
        )
    )
    return set(rows)


def _active(session: Session, partner_id: str) -> bool:
    partner = session.get(Partner, partner_id)
    return partner is not None and partner.status == PartnerStatus.ACTIVE.value


def readable(session: Session, collection_id: str, partner_id: str) -> Collection:
    """The collection if `partner_id` may read it; a 404 otherwise (others may not learn it exists)."""
    collection = session.get(Collection, collection_id)
    if (
        collection is None
        or Access.READER.value not in access_of(session, collection_id, partner_id)
        or not _active(session, partner_id)
    ):
        raise NotFoundError("no such collection")
    return collection


def contributable(session: Session, collection_id: str, partner_id: str) -> Collection:
    """The collection if `partner_id` may contribute; 404 if it may not even see it, 403 if read-only."""
    collection = session.get(Collection, collection_id)
    access = access_of(session, collection_id, partner_id) if collection is not None else set()
    if collection is None or not access or not _active(session, partner_id):
        raise NotFoundError("no such collection")
    if Access.CONTRIBUTOR.value not in access:
        raise ForbiddenError("this partner may not contribute to this collection")
    return collection


def visible_to(session: Session, partner_id: str) -> list[Collection]:
    """Collections the partner may read or contribute to, by slug."""
    if not _active(session, partner_id):
        return []
    ids = select(CollectionMember.collection_id).where(CollectionMember.partner_id == partner_id)
    return list(session.scalars(select(Collection).where(Collection.id.in_(ids)).order_by(Collection.slug)))


def members(session: Session, collection_id: str) -> dict[str, list[str]]:
    """{"reader": [partner ids], "contributor": [...]} for governance views."""
    out: dict[str, list[str]] = {a.value: [] for a in Access}
    rows = session.execute(
        select(CollectionMember.access, CollectionMember.partner_id)
        .where(CollectionMember.collection_id == collection_id)
        .order_by(CollectionMember.partner_id)
    )
    for access, partner in rows:
        out[access].append(partner)
    return out
