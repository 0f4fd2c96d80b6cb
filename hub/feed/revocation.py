"""Revoking an online key: the next key set marks it revoked, and everything it signed is signed again.

A verifier never counts a revoked key, whatever time a payload claims (a thief chooses `sealed_at`), so in
the same unit of work as the key set and its audit entry the hub re-signs every stored item the key signed
with the current key of its role: batch envelopes (`batch`), collection descriptors (`collection`),
collection checkpoints and the heads' notes (`checkpoint`), the heads' cosignatures (`timestamp`) and audit
checkpoints (`audit`). Snapshots are not stored: serving processes sign them again with the new key set's
key (`hub.transparency.keys.serving_keys`). Payloads and checkpoint bodies are unchanged, so every log, leaf and root is
too. The key that re-signs is listed valid from the revoked key's `valid_from`, so what it re-signed verifies
at the payload's own time (docs/formats.md, "Revocation").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from audit import signing
from audit.dsse import Envelope, sign_envelope
from audit.note import SIG_COSIGNATURE, SIG_ED25519, Note, NoteSignature, cosign_note, note_key_hash
from audit.signing import Signer
from hub import rls
from hub.errors import ConflictError, NotFoundError
from hub.feed import batches
from hub.feed.models import Batch, Collection, CollectionCheckpoint, CollectionHead
from hub.transparency import keys
from hub.transparency.auditlog import Actor, record
from hub.transparency.models import AuditCheckpoint, SigningKey


@dataclass(frozen=True)
class Revoked:
    """What a revocation did: the key, its role, the key that re-signed, the key set, and counts per item."""

    key_id: str
    role: str
    replacement: str
    keyset_version: int
    resigned: dict[str, int]


def revoke_key(
    session: Session,
    *,
    hub_name: str,
    key_id: str,
    reason: str,
    root_signers: Sequence[Signer],
    online: Mapping[str, Signer],
    replacement: Signer | None,
    now: datetime,
) -> Revoked:
    """Revoke `key_id`, publish the next key set, re-sign what it signed, record one audit entry.

    `online`: the role keys the hub holds now (one per role). `replacement`: a fresh key for the role, needed
    when `key_id` is the role's current key (it is listed and signs in its place), else None: the role's
    current key re-signs. Raises `NotFoundError` for an unknown key, `ConflictError` if already revoked.
    """
    rls.set_tenant(session, rls.SYSTEM)  # the hub's own rows, every collection's
    row = session.get(SigningKey, key_id)
    if row is None:
        raise NotFoundError(f"no signing key {key_id}")
    if row.revoked_at is not None:
        raise ConflictError(f"key {key_id} was revoked at {row.revoked_at.isoformat()}")
    role, revoked_public = row.role, bytes(row.public_key)
    current = keys.active_key(session, role)
    if current is row:
        if replacement is None:
            raise ConflictError(f"key {key_id} is the current {role} key: a replacement key is needed")
        signer = replacement
        successor = keys.add_signing_key(session, role, replacement.public_key, now)
    else:
        signer = online[role]
        if current is None or current.key_id != signer.key_id:
            raise ConflictError(f"the {role} key file is not the current {role} key; fix that before revoking")
        successor = current
    # What the revoked key signed carries its own times (a batch's sealed_at, an audit entry's time): the key
    # that re-signs must be valid then.
    successor.valid_from = min(successor.valid_from, row.valid_from)
    row.revoked_at = keys.whole_second(now)
    session.flush()
    published = keys.publish_keyset(session, hub_name, root_signers, now)

    signers = {**online, role: signer}
    resigned = resign(session, hub_name, role, revoked_public, signers, now)
    record(
        session,
        Actor.operator(),
        "keys.revoke",
        f"key/{key_id}",
        {
            "role": role,
            "reason": reason,
            "key_set": published.version,
            "replacement": signer.key_id,
            "resigned": resigned,
        },
        now=now,
    )
    return Revoked(key_id, role, signer.key_id, published.version, resigned)


def resign(
    session: Session, hub_name: str, role: str, revoked: bytes, signers: Mapping[str, Signer], now: datetime
) -> dict[str, int]:
    """Re-sign every stored item of `role` that the key `revoked` (public key) signed; counts per kind."""
    signer = signers[role]
    if role == "batch":
        return {"batches": _resign_batches(session, signing.key_id(revoked), signer)}
    if role == "collection":
        return {"descriptors": _resign_descriptors(session, signing.key_id(revoked), signer)}
    if role == "checkpoint":
        sizes = _resign_collection_checkpoints(session, revoked, signer)
        heads = _recosign_heads(
            session, hub_name, signers["timestamp"], now, lambda h: (h.collection_id, h.size) in sizes
        )
        return {"collection_checkpoints": len(sizes), "heads": heads}
    if role == "timestamp":
        name = batches.cosigner_name(hub_name)
        key_hash = note_key_hash(name, SIG_COSIGNATURE, revoked)
        heads = _recosign_heads(
            session, hub_name, signer, now, lambda h: any(s.key_hash == key_hash for s in Note.parse(h.note).signatures)
        )
        return {"heads": heads}
    if role == "audit":
        return {"audit_checkpoints": _resign_audit_checkpoints(session, revoked, signer)}
    return {}  # `export`: the hub stores nothing it signs (export bundles are signed when made)


def _resign_batches(session: Session, revoked_id: str, signer: Signer) -> int:
    # The signatures alone are read first (a few hundred bytes a batch); payloads only for those to re-sign.
    rows = session.execute(select(Batch.collection_id, Batch.seq, Batch.signatures)).all()
    count = 0
    for collection_id, seq, signatures in rows:
        if revoked_id not in {s.get("keyid") for s in json.loads(bytes(signatures))}:
            continue
        where = (Batch.collection_id == collection_id, Batch.seq == seq)
        payload = bytes(session.scalar(select(Batch.payload).where(*where)) or b"")
        session.execute(update(Batch).where(*where).values(signatures=batches.signatures_json(payload, signer)))
        count += 1
    return count


def _resign_descriptors(session: Session, revoked_id: str, signer: Signer) -> int:
    count = 0
    for collection in session.scalars(select(Collection)):
        env = Envelope.from_json(bytes(collection.descriptor))
        if revoked_id in {s.keyid for s in env.signatures}:
            collection.descriptor = sign_envelope(env.payload_type, env.payload, [signer]).to_json()
            count += 1
    session.flush()
    return count


def resigned_note(note: str, revoked: bytes, signer: Signer) -> str | None:
    """`note` with each Ed25519 line by `revoked` replaced by one by `signer` (same name), or None if none."""
    parsed = Note.parse(note)
    names = [s.name for s in parsed.signatures if s.key_hash == note_key_hash(s.name, SIG_ED25519, revoked)]
    if not names:
        return None
    kept = tuple(s for s in parsed.signatures if s.key_hash != note_key_hash(s.name, SIG_ED25519, revoked))
    fresh = tuple(
        NoteSignature(n, note_key_hash(n, SIG_ED25519, signer.public_key), signer.sign(parsed.text.encode()))
        for n in names
    )
    return Note(parsed.text, fresh + kept).to_text()


def _resign_collection_checkpoints(session: Session, revoked: bytes, signer: Signer) -> set[tuple[str, int]]:
    done: set[tuple[str, int]] = set()
    for collection_id, size, note in session.execute(
        select(CollectionCheckpoint.collection_id, CollectionCheckpoint.size, CollectionCheckpoint.note)
    ).all():
        new = resigned_note(note, revoked, signer)
        if new is None:
            continue
        session.execute(
            update(CollectionCheckpoint)
            .where(CollectionCheckpoint.collection_id == collection_id, CollectionCheckpoint.size == size)
            .values(note=new)
        )
        done.add((collection_id, size))
    return done


def _recosign_heads(
    session: Session, hub_name: str, timestamp: Signer, now: datetime, due: Callable[[CollectionHead], bool]
) -> int:
    """Serve each due head's checkpoint (as stored now) with a fresh cosignature at `now`."""
    t = keys.whole_second(now)
    count = 0
    session.flush()
    session.expire_all()  # the checkpoints were just updated by statements, not through the identity map
    for head in session.scalars(select(CollectionHead).with_for_update()):
        if not due(head):
            continue
        base = session.get(CollectionCheckpoint, (head.collection_id, head.size))
        if base is None:
            raise batches.SealError(f"collection {head.collection_id}: checkpoint at size {head.size} is missing")
        head.note = cosign_note(base.note, batches.cosigner_name(hub_name), timestamp, int(t.timestamp()))
        head.cosigned_at = t
        count += 1
    session.flush()
    return count


def _resign_audit_checkpoints(session: Session, revoked: bytes, signer: Signer) -> int:
    count = 0
    for size, note in session.execute(select(AuditCheckpoint.size, AuditCheckpoint.note)).all():
        new = resigned_note(note, revoked, signer)
        if new is not None:
            session.execute(update(AuditCheckpoint).where(AuditCheckpoint.size == size).values(note=new))
            count += 1
    return count
