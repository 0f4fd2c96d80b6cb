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
from hub.feed.models import Signal, SignalSeq, VpdqValue

CHUNK_SIZE = 50_000

# A vpdq signal's entry carries its frames text, as its batch did; every other value is the signal's own.
_VALUE = func.coalesce(VpdqValue.frames, Signal.value)
_COLUMNS = (Signal.id, Signal.type, _VALUE, Signal.quality, Signal.tags, Signal.added_audit_seq)


def _active_at(collection_id: str, seq: int) -> Any:
    return (
        select(*_COLUMNS)
        .join(SignalSeq, SignalSeq.signal_id == Signal.id)
        .outerjoin(VpdqValue, and_(Signal.type == "vpdq", VpdqValue.sha256 == Signal.value))
        .where(
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


def chunks(session: Session, collection_id: str, seq: int) -> Iterator[tuple[bytes, int, str | None]]:
    """Every chunk's bytes, signal count and first signal id at `seq`, in order (one streaming read)."""
    result = session.execute(_active_at(collection_id, seq).execution_options(yield_per=CHUNK_SIZE))
    index = 0
    for part in result.partitions(CHUNK_SIZE):
        yield encode_chunk(collection_id, seq, index, _adds(part)), len(part), part[0][0]
        index += 1
    if index == 0:
        yield encode_chunk(collection_id, seq, 0, []), 0, None


def chunk_starts(session: Session, collection_id: str, seq: int) -> list[str]:
    """The first signal id of each chunk at `seq`, computed in the database from the ids alone."""
    ranked = _active_at(collection_id, seq).with_only_columns(
        Signal.id, func.row_number().over(order_by=Signal.id).label("n")
    ).order_by(None).subquery()
    query = select(ranked.c.id).where((ranked.c.n - 1) % CHUNK_SIZE == 0).order_by(ranked.c.id)
    return list(session.scalars(query))


def chunk(session: Session, collection_id: str, seq: int, index: int, starts: list[str] | None = None) -> bytes:
    """Chunk `index` at `seq`, read from its first id (`starts`: `chunk_starts`' result); 404 past the last."""
    if starts is None:
        starts = chunk_starts(session, collection_id, seq)
    if index < 0 or index >= max(1, len(starts)):
        raise NotFoundError("no such chunk")
    if not starts:
        return encode_chunk(collection_id, seq, 0, [])
    query = _active_at(collection_id, seq).where(Signal.id >= starts[index]).limit(CHUNK_SIZE)
    return encode_chunk(collection_id, seq, index, _adds(session.execute(query).all()))


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
