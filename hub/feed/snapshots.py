"""Signed snapshots: a collection's active signals at seq S, so a new partner need not replay every batch.

The snapshot (`application/vnd.hashfed.snapshot.v1+json`, role `batch`) names the root and frontier at S,
the SHA-256 of payload S (the next batch's `prev`) and the SHA-256 of each chunk of at most 50,000 signals
active at S (id order). A chunk is canonical JSON `{"collection", "seq", "index", "signals": [add...]}`,
each add as in a batch. Both are deterministic in S (Ed25519 signatures are too), so chunks are rebuilt
on request; the envelope and the first signal id of each chunk are cached per process, so a chunk is one
index range scan from its first id (keyset paging), never an OFFSET that rereads every earlier chunk.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from audit.canonical import canonical_json
from audit.dsse import sign_envelope
from audit.payloads import BatchAdd, Snapshot, SnapshotChunk
from audit.signing import Signer
from hub.errors import NotFoundError
from hub.feed import batches
from hub.feed.models import Collection, Signal, SignalSeq, SignalStatus, VpdqValue

CHUNK_SIZE = 50_000
# A chunk of a collection that holds videos also ends before this many bytes of entries (a vpdq text can be
# 691,200 characters): it must fit the kit's chunk cap (32 MiB, partners/client/transport.py). docs/adr/0014.
CHUNK_BYTES = 16 << 20
_ENTRY_BYTES = 300  # an entry's JSON besides its value (id, type, audit_seq, tags, the escapes of a vpdq text)

# A vpdq signal's entry carries its frames text, as its batch did; every other value is the signal's own.
_VALUE = func.coalesce(VpdqValue.frames, Signal.value)
_COLUMNS = (Signal.id, Signal.type, Signal.value, Signal.quality, Signal.tags, Signal.added_audit_seq)


def _active_at(collection_id: str, seq: int, videos: bool = False) -> Any:
    """The signals active at `seq` in id order; with `videos`, a vpdq signal's value is its frames text (a join
    that a collection of images does without)."""
    query = select(*_COLUMNS).join(SignalSeq, SignalSeq.signal_id == Signal.id)
    if videos:
        query = query.outerjoin(VpdqValue, and_(Signal.type == "vpdq", VpdqValue.sha256 == Signal.value))
        query = query.with_only_columns(*_COLUMNS[:2], _VALUE, *_COLUMNS[3:])
    return (
        query.where(
            Signal.collection_id == collection_id,
            SignalSeq.added_seq <= seq,
            or_(SignalSeq.removed_seq.is_(None), SignalSeq.removed_seq > seq),
        )
        .order_by(Signal.id)
    )


def _adds(rows: Any) -> list[BatchAdd]:
    return [
        BatchAdd(i, t, v, a, q, tuple(json.loads(tags)) if tags else None) for i, t, v, q, tags, a in rows
    ]


def encode_chunk(collection_id: str, seq: int, index: int, adds: list[BatchAdd]) -> bytes:
    """RFC 8785 bytes of a chunk."""
    return canonical_json(
        {"collection": collection_id, "seq": seq, "index": index, "signals": [a.to_dict() for a in adds]}
    )


def holds_videos(session: Session, collection_id: str) -> bool:
    """Whether the collection takes vpdq signals or still holds an active one: its chunks are cut by bytes too."""
    collection = session.get(Collection, collection_id)
    if collection is not None and "vpdq" in collection.types:
        return True
    found = select(Signal.id).where(
        Signal.collection_id == collection_id, Signal.type == "vpdq", Signal.status == SignalStatus.ACTIVE.value
    )
    return session.scalar(found.limit(1)) is not None


def chunks(session: Session, collection_id: str, seq: int) -> Iterator[tuple[bytes, int, str | None]]:
    """Every chunk's bytes, signal count and first signal id at `seq`, in order (one streaming read; a
    collection with videos: one range read per chunk, from `chunk_starts`)."""
    if holds_videos(session, collection_id):
        starts = _chunk_starts_by_bytes(session, collection_id, seq)
        for index, first in enumerate(starts):
            adds = _chunk_adds(session, collection_id, seq, index, starts)
            yield encode_chunk(collection_id, seq, index, adds), len(adds), first
        if not starts:
            yield encode_chunk(collection_id, seq, 0, []), 0, None
        return
    result = session.execute(_active_at(collection_id, seq).execution_options(yield_per=CHUNK_SIZE))
    index = 0
    for part in result.partitions(CHUNK_SIZE):
        yield encode_chunk(collection_id, seq, index, _adds(part)), len(part), part[0][0]
        index += 1
    if index == 0:
        yield encode_chunk(collection_id, seq, 0, []), 0, None


def chunk_starts(session: Session, collection_id: str, seq: int) -> list[str]:
    """The first signal id of each chunk at `seq`, computed in the database from the ids alone (a collection with
    videos: from ids and entry lengths, a chunk ending at every 50,000th signal and every `CHUNK_BYTES`)."""
    if holds_videos(session, collection_id):
        return _chunk_starts_by_bytes(session, collection_id, seq)
    ranked = _active_at(collection_id, seq).with_only_columns(
        Signal.id, func.row_number().over(order_by=Signal.id).label("n")
    ).order_by(None).subquery()
    query = select(ranked.c.id).where((ranked.c.n - 1) % CHUNK_SIZE == 0).order_by(ranked.c.id)
    return list(session.scalars(query))


def _chunk_starts_by_bytes(session: Session, collection_id: str, seq: int) -> list[str]:
    """Chunk k holds the signals (in id order) that share both their row number // 50,000 and the bytes of the
    entries before them // `CHUNK_BYTES`: at most 50,000 signals, and under `CHUNK_BYTES` plus one entry."""
    active = _active_at(collection_id, seq, videos=True).with_only_columns(
        Signal.id, (func.length(_VALUE) + _ENTRY_BYTES).label("b")
    ).order_by(None).subquery()
    ranked = select(
        active.c.id,
        ((func.row_number().over(order_by=active.c.id) - 1) // CHUNK_SIZE).label("by_count"),
        ((func.sum(active.c.b).over(order_by=active.c.id) - active.c.b) // CHUNK_BYTES).label("by_bytes"),
    ).subquery()
    marked = select(
        ranked.c.id,
        (
            (func.lag(ranked.c.by_count).over(order_by=ranked.c.id).is_distinct_from(ranked.c.by_count))
            | (func.lag(ranked.c.by_bytes).over(order_by=ranked.c.id).is_distinct_from(ranked.c.by_bytes))
        ).label("first"),
    ).subquery()
    return list(session.scalars(select(marked.c.id).where(marked.c.first).order_by(marked.c.id)))


def _chunk_adds(session: Session, collection_id: str, seq: int, index: int, starts: list[str]) -> list[BatchAdd]:
    query = _active_at(collection_id, seq, videos=True).where(Signal.id >= starts[index])
    if index + 1 < len(starts):
        query = query.where(Signal.id < starts[index + 1])
    return _adds(session.execute(query.limit(CHUNK_SIZE)).all())


def chunk(session: Session, collection_id: str, seq: int, index: int, starts: list[str] | None = None) -> bytes:
    """Chunk `index` at `seq`, read from its first id (`starts`: `chunk_starts`' result); 404 past the last."""
    if starts is None:
        starts = chunk_starts(session, collection_id, seq)
    if index < 0 or index >= max(1, len(starts)):
        raise NotFoundError("no such chunk")
    if not starts:
        return encode_chunk(collection_id, seq, 0, [])
    return encode_chunk(collection_id, seq, index, _chunk_adds(session, collection_id, seq, index, starts))


def build(session: Session, collection_id: str, seq: int, signer: Signer) -> tuple[bytes, list[str]]:
    """The signed snapshot envelope at `seq` (>= 1) and the first signal id of each of its chunks."""
    if seq < 1:
        raise NotFoundError("a snapshot needs at least one sealed batch")
    digests = []
    starts: list[str] = []
    for i, (data, count, first) in enumerate(chunks(session, collection_id, seq)):
        digests.append(SnapshotChunk(i, hashlib.sha256(data).hexdigest(), count))
        if first is not None:
            starts.append(first)
    frontier = batches.frontier_at(session, collection_id, seq)
    snapshot = Snapshot(
        collection=collection_id,
        seq=seq,
        root=frontier.root(),
        frontier=frontier,
        payload_sha256=batches.batch(session, collection_id, seq).payload_sha256,
        chunks=tuple(digests),
    )
    return sign_envelope(Snapshot.PAYLOAD_TYPE, snapshot.to_bytes(), [signer]).to_json(), starts
