"""Upstreams: configuration (add, list, show, enable/disable, remove) and feeding a pull into the local collection.

A pull (hub/upstreams/pull.py) brings a `Feed`: the adds and removals the upstream made since the upstream's
`position`, each named by its upstream reference. `apply` turns it into pending changes of the local collection
in one transaction: adds are submitted as the upstream's local partner (deduplicated, deny list and quarantine
respected, as any submission), each new pending add carries its provenance, which the sealer copies into its
batch entry; removals retract the signal the upstream's add became here. One `upstream.import` audit entry
lists every add and removal with its provenance, and the new pending adds point at it. A pull that fails
(a verification, the network, a malformed answer) applies nothing and is recorded on the upstream:
`/readyz` and the console show it until a pull succeeds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from audit.canonical import canonical_json
from audit.payloads import Provenance
from hub import rls
from hub.db import utcnow
from hub.errors import ConflictError, HubError, NotFoundError, ValidationError
from hub.feed import collections, signals
from hub.feed.models import PendingChange, Signal, SignalClaim, SignalStatus
from hub.identity.models import new_id
from hub.identity.tenants import get_partner
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor
from hub.upstreams import secrets as sealed
from hub.upstreams.models import Upstream, UpstreamKind, UpstreamSignal

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# The credentials each kind needs (stored encrypted), besides what is plain configuration.
CREDENTIALS = {
    UpstreamKind.HASHFED: ("client_secret",),
    UpstreamKind.STOPNCII: ("subscription_key", "functions_key"),
}
# An `upstream.import` audit entry lists its adds and removals up to this many; beyond it, their digest.
AUDIT_LIST_LIMIT = 100
# How long an error string kept on an upstream (and shown in /readyz) may be.
MAX_ERROR = 500
_CHUNK = 1000  # values per IN list


class UpstreamError(HubError):
    """A pull from an upstream failed: nothing from it was applied."""

    status = 502
    default_message = "the upstream could not be read"


def actor(upstream: Upstream) -> Actor:
    """Who the upstream's imports are in the audit log."""
    return Actor(type="system", name=f"upstream/{upstream.name}")


# --- configuration ---------------------------------------------------------------------------------------


def add(
    session: Session,
    *,
    name: str,
    kind: str,
    url: str,
    collection: str,
    partner: str | None,
    credentials: dict[str, str],
    hub_secret: bytes,
    actor: Actor,
    upstream_collection: str | None = None,
    client_id: str | None = None,
    keyset_sha256: str | None = None,
    now: datetime | None = None,
) -> Upstream:
    """Configure an upstream feeding `collection`; its credentials are stored encrypted, never audited."""
    now = now or utcnow()
    rls.set_tenant(session, rls.SYSTEM)
    if not NAME.fullmatch(name):
        raise ValidationError("an upstream name is 1-63 lowercase letters, digits, _ and -, first a letter or digit")
    try:
        chosen = UpstreamKind(kind)
    except ValueError as e:
        raise ValidationError(f"kind is one of {', '.join(k.value for k in UpstreamKind)}") from e
    if not url.startswith(("https://", "http://")):
        raise ValidationError("the upstream URL starts with https:// (or http:// on a private network)")
    missing = [k for k in CREDENTIALS[chosen] if not credentials.get(k)]
    if missing:
        raise ValidationError(f"a {chosen.value} upstream needs {', '.join(missing)}")
    if chosen is UpstreamKind.HASHFED:
        if not upstream_collection or not client_id:
            raise ValidationError("a hashfed upstream needs the upstream collection and an OAuth client id there")
        if keyset_sha256 is None or not _HEX64.fullmatch(keyset_sha256):
            raise ValidationError("a hashfed upstream needs the pinned key set SHA-256: 64 lowercase hex digits")
    local = collections.get(session, collection)
    contributor = get_partner(session, partner) if partner is not None else get_partner(session, local.owner_id)
    collections.contributable(session, local.id, contributor.id)
    if session.scalar(select(Upstream.id).where(Upstream.name == name)) is not None:
        raise ConflictError(f"an upstream named {name!r} exists")
    upstream_id = new_id()
    secret = {k: credentials[k] for k in CREDENTIALS[chosen]}
    details: dict[str, Any] = {
        "name": name,
        "kind": chosen.value,
        "url": url,
        "collection": local.id,
        "partner": contributor.id,
    }
    if chosen is UpstreamKind.HASHFED:
        details |= {"upstream_collection": upstream_collection, "client_id": client_id, "keyset_sha256": keyset_sha256}
    rec = auditlog.record(session, actor, "upstream.add", f"upstream/{upstream_id}", details, now=now)
    row = Upstream(
        id=upstream_id,
        name=name,
        kind=chosen.value,
        url=url.rstrip("/"),
        collection_id=local.id,
        partner_id=contributor.id,
        upstream_collection=upstream_collection if chosen is UpstreamKind.HASHFED else None,
        client_id=client_id if chosen is UpstreamKind.HASHFED else None,
        keyset_sha256=keyset_sha256 if chosen is UpstreamKind.HASHFED else None,
        credentials=sealed.seal(hub_secret, upstream_id, secret),
        enabled=True,
        position=0,
        created_at=now,
        audit_seq=rec.seq,
    )
    session.add(row)
    session.flush()
    return row


def get(session: Session, name: str) -> Upstream:
    rls.set_tenant(session, rls.SYSTEM)
    row = session.scalars(select(Upstream).where((Upstream.name == name) | (Upstream.id == name))).first()
    if row is None:
        raise NotFoundError(f"no upstream {name!r}")
    return row


def list_upstreams(session: Session) -> list[Upstream]:
    rls.set_tenant(session, rls.SYSTEM)
    return list(session.scalars(select(Upstream).order_by(Upstream.name)))


def set_enabled(session: Session, name: str, enabled: bool, *, actor: Actor, now: datetime | None = None) -> Upstream:
    """Stop (or resume) feeding from an upstream; what it fed stays."""
    row = get(session, name)
    if row.enabled == enabled:
        raise ConflictError(f"upstream {row.name!r} is already {'enabled' if enabled else 'disabled'}")
    auditlog.record(session, actor, "upstream.enable" if enabled else "upstream.disable", f"upstream/{row.id}",
                    {"name": row.name}, now=now)
    row.enabled = enabled
    session.flush()
    return row


def remove(session: Session, name: str, *, actor: Actor, now: datetime | None = None) -> None:
    """Forget an upstream and its credentials; the hashes it fed stay in the collection as they are."""
    row = get(session, name)
    auditlog.record(session, actor, "upstream.remove", f"upstream/{row.id}", {"name": row.name}, now=now)
    session.execute(delete(UpstreamSignal).where(UpstreamSignal.upstream_id == row.id))
    session.delete(row)
    session.flush()


def credentials_of(upstream: Upstream, hub_secret: bytes) -> dict[str, Any]:
    return sealed.open_sealed(hub_secret, upstream.id, upstream.credentials)


def describe(upstream: Upstream) -> dict[str, Any]:
    """What an operator or the console may see of an upstream: everything but the credentials' values."""
    return {
        "name": upstream.name,
        "kind": upstream.kind,
        "url": upstream.url,
        "collection": upstream.collection_id,
        "partner": upstream.partner_id,
        "upstream_collection": upstream.upstream_collection,
        "client_id": upstream.client_id,
        "keyset_sha256": upstream.keyset_sha256,
        "credentials": "set (encrypted)",
        "enabled": upstream.enabled,
        "position": upstream.position,
        "last_attempt_at": upstream.last_attempt_at,
        "last_success_at": upstream.last_success_at,
        "last_error": upstream.last_error,
        "last_error_at": upstream.last_error_at,
        "status": status_of(upstream),
    }


def status_of(upstream: Upstream) -> str:
    if not upstream.enabled:
        return "disabled"
    if upstream.last_error is not None:
        return "failing"
    return "ok" if upstream.last_success_at is not None else "not pulled yet"


def failing(session: Session) -> list[Upstream]:
    """Enabled upstreams whose last pull failed (readiness and the console report them)."""
    rls.set_tenant(session, rls.SYSTEM)
    return list(
        session.scalars(
            select(Upstream).where(Upstream.enabled.is_(True), Upstream.last_error.is_not(None)).order_by(Upstream.name)
        )
    )


# --- feeding ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Add:
    """An upstream add: its reference upstream, the hash, and where it came from."""

    ref: str
    type: str
    value: str
    provenance: Provenance
    quality: int | None = None


@dataclass(frozen=True)
class Remove:
    ref: str
    reason: str
    provenance: Provenance


@dataclass
class Feed:
    """What one pull brought: net adds and removals (in upstream order) and the position after them."""

    position: int
    adds: list[Add] = field(default_factory=list)
    removes: list[Remove] = field(default_factory=list)
    # Set when the pull restarted from a snapshot past the position fed (a hashfed upstream's mirror was lost or
    # moved): every ref the upstream holds now. Removals between the two are not in `removes`; what this upstream
    # fed here and is not in `complete` is removed all the same.
    complete: frozenset[str] | None = None


@dataclass(frozen=True)
class Imported:
    upstream: str
    position: int
    added: int
    removed: int
    skipped: int
    audit_seq: int | None


def _stored_key(add: Add) -> tuple[str, str]:
    """(type, value) as the hub stores it: a vpdq video by the digest of its canonical frames text."""
    if add.type == "vpdq":
        return add.type, signals.parse_vpdq_value(add.value)[0]
    return add.type, add.value.lower()


def _digest(items: Sequence[dict[str, Any]]) -> str:
    return hashlib.sha256(canonical_json(list(items))).hexdigest()


def apply(session: Session, upstream: Upstream, feed: Feed, *, hub_secret: bytes, now: datetime) -> Imported:
    """Feed one verified pull into the local collection, in the caller's transaction."""
    rls.set_tenant(session, rls.SYSTEM)
    who = actor(upstream)
    local = collections.get(session, upstream.collection_id)
    removes = list(feed.removes)
    if feed.complete is not None:
        named = {rm.ref for rm in removes}
        fed = session.scalars(select(UpstreamSignal.ref).where(UpstreamSignal.upstream_id == upstream.id))
        removes += [Remove(ref, "upstream", Provenance(upstream.name, ref if upstream.kind == "hashfed" else None,
                                                       feed.position))
                    for ref in sorted(set(fed) - feed.complete - named)]
    refs = sorted({rm.ref for rm in removes})
    known: dict[str, str] = {}
    for start in range(0, len(refs), _CHUNK):
        mapped = select(UpstreamSignal.ref, UpstreamSignal.signal_id).where(
            UpstreamSignal.upstream_id == upstream.id, UpstreamSignal.ref.in_(refs[start : start + _CHUNK])
        )
        known.update((ref, sid) for ref, sid in session.execute(mapped))
    removed: list[dict[str, Any]] = []
    present = refused_count = 0  # already so here; refused here (type, quality, deny list, quarantine)
    for rm in removes:
        sid = known.get(rm.ref)
        signal = session.get(Signal, sid) if sid is not None else None
        others = signal is not None and session.scalar(
            select(SignalClaim.partner_id).where(SignalClaim.signal_id == signal.id,
                                                 SignalClaim.partner_id != upstream.partner_id).limit(1)
        )
        if signal is None or signal.status != SignalStatus.ACTIVE.value or others:
            present += 1  # never fed here, already gone, or claimed by a partner here as well: it stays
            continue
        signals.retract(session, collection_id=local.id, signal_id=signal.id, partner_id=None, actor=who,
                        reason=rm.reason, now=now)
        removed.append({"id": signal.id, "reason": rm.reason, "provenance": rm.provenance.to_dict()})

    # Adds: what this collection takes, as any submission (types, quality, deny list, quarantine).
    wanted: list[Add] = []
    for a in feed.adds:
        item: dict[str, Any] = {"type": a.type, "value": a.value}
        if a.quality is not None and a.type == "pdq":
            item["quality"] = a.quality
        try:
            signals.validate([item], local.types, local.min_quality)
        except HubError:
            refused_count += 1
            continue
        wanted.append(a)
    refused = signals.refused(session, local.id, sorted({_stored_key(a) for a in wanted}))
    if refused:
        refused_count += sum(1 for a in wanted if _stored_key(a) in refused)
        wanted = [a for a in wanted if _stored_key(a) not in refused]
    added: list[tuple[Add, str]] = []
    for start in range(0, len(wanted), signals.MAX_SIGNALS_PER_REQUEST):
        chunk = wanted[start : start + signals.MAX_SIGNALS_PER_REQUEST]
        items = [
            {"type": a.type, "value": a.value} | ({"quality": a.quality} if a.quality is not None and a.type == "pdq"
                                                  else {})
            for a in chunk
        ]
        result = signals.submit(session, collection_id=local.id, partner_id=upstream.partner_id, items=items,
                                actor=who, hub_secret=hub_secret, now=now)
        fresh = set(result.new_ids)
        for a, sid in zip(chunk, result.body["ids"], strict=True):
            if sid in fresh:
                added.append((a, sid))
            else:
                present += 1  # already active here (contributed here or by another upstream): not ours to remove

    entry_adds = [{"id": sid, "provenance": a.provenance.to_dict()} for a, sid in added]
    details: dict[str, Any] = {
        "upstream": upstream.name,
        "kind": upstream.kind,
        "collection": local.id,
        "position": {"from": upstream.position, "to": feed.position},
        "added": len(entry_adds),
        "removed": len(removed),
        "refused": refused_count,
        "present": present,
    }
    for key, listed in (("adds", entry_adds), ("removes", removed)):
        if len(listed) <= AUDIT_LIST_LIMIT:
            details[key] = listed
        else:
            details[f"{key}_sha256"] = _digest(listed)
    audit_seq: int | None = None
    if added or removed or refused_count:  # a pull that changed nothing here writes no entry
        seq = auditlog.record(session, who, "upstream.import", f"upstream/{upstream.id}", details, now=now).seq
        audit_seq = seq
        for a, sid in added:
            session.execute(
                update(PendingChange)
                .where(PendingChange.collection_id == local.id, PendingChange.signal_id == sid)
                .values(provenance=canonical_json(a.provenance.to_dict()).decode(), audit_seq=seq)
            )
            row = session.get(UpstreamSignal, (upstream.id, a.ref))
            if row is None:
                session.add(UpstreamSignal(upstream_id=upstream.id, ref=a.ref, signal_id=sid, audit_seq=seq))
            else:
                row.signal_id, row.audit_seq = sid, seq
    upstream.position = feed.position
    upstream.last_attempt_at = upstream.last_success_at = now
    upstream.last_error = upstream.last_error_at = None
    session.flush()
    return Imported(upstream.name, feed.position, len(added), len(removed), present + refused_count, audit_seq)


def record_failure(session: Session, upstream_id: str, error: str, now: datetime) -> None:
    """Keep why a pull applied nothing (shown by /readyz and the console until a pull succeeds)."""
    rls.set_tenant(session, rls.SYSTEM)
    row = session.get(Upstream, upstream_id)
    if row is None:
        return
    row.last_attempt_at = now
    row.last_error = error[:MAX_ERROR]
    row.last_error_at = now
    session.flush()
