"""Sealing: a collection's pending changes become signed, gapless batches appended to its Merkle log.

Batch seq N+1 carries `prev` = SHA-256 of payload N, is signed (DSSE, `batch` key) and stored as immutable
bytes; leaf seq-1 of the collection's log is SHA-256(0x00 || payload). After a run the log gets a checkpoint
(C2SP signed note, `checkpoint` key, key name = origin) with a `cosignature/v1` line from the `timestamp`
key, refreshed by `cosign_stale` so partners can tell a fresh view from a replayed one.

Two sealers never write the same seq: each takes a per-collection advisory lock, re-reads the head under it,
and (collection, seq) is unique.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import struct
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    inspect,
    select,
    text,
)
from sqlalchemy.orm import Session

from audit.canonical import canonical_json, format_time
from audit.dsse import sign_envelope
from audit.log import (
    assemble_consistency,
    assemble_root,
    frontier_from_nodes,
    frontier_keys,
    nodes_to_store,
    required_keys_for_consistency,
    required_keys_for_root,
)
from audit.merkle import CompactRange, NodeKey, b64encode, leaf_hash
from audit.note import Checkpoint, cosign_note, sign_checkpoint
from audit.payloads import BatchAdd, BatchPayload, BatchRemove, Provenance
from audit.signing import Signer
from hub import rls
from hub.errors import HubError, NotFoundError
from hub.feed import collections
from hub.feed.models import (
    Batch,
    Collection,
    CollectionCheckpoint,
    CollectionHead,
    CollectionNode,
    Pending,
    PendingChange,
    SignalSeq,
    VpdqValue,
    envelope_of,
)
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor, SqlNodeStore

# Namespace (first key) of the per-collection advisory locks; the second key is hashtext(collection id).
SEAL_LOCK = 0x68667364  # "hfsd"


class SealError(HubError):
    """The stored log of a collection is inconsistent (a missing node or batch): an operator must look."""


@dataclass(frozen=True)
class Signers:
    """The three online keys sealing uses."""

    batch: Signer
    checkpoint: Signer
    timestamp: Signer


@dataclass(frozen=True)
class Sealed:
    """What one sealing run wrote for a collection."""

    collection_id: str
    seqs: list[int]
    adds: int
    removes: int
    size: int
    root: bytes


def cosigner_name(hub_name: str) -> str:
    """Key name of the `timestamp` key's cosignatures on every checkpoint of this hub."""
    return f"{hub_name}/timestamp"


# --- canonical bytes ---------------------------------------------------------------------------------------

# The one hand-written canonical JSON of the hub: `_encode_rows`, the batch payload on the sealing hot path
# (audit's encoder, generic and value by value, would hold sealing below its target; docs/perf.md). Everything
# else calls `audit.canonical`. Strings made only of these characters need no escaping in RFC 8785 (3.2.2.2), so the
# template copies them as they are; anything else falls back to audit's encoder. A property test holds the
# template to rfc8785 byte for byte (tests/hub/test_canonical_templates.py).
_PLAIN = r"[A-Za-z0-9_.:/+=\- ]*"
_SAFE = re.compile(_PLAIN)
# Tags as signals.py stores them: a JSON list of plain strings, which is already their RFC 8785 form.
_TAGS_JSON = re.compile(rf'\[(?:"{_PLAIN}"(?:,"{_PLAIN}")*)?\]')
# RFC 8785 3.2.2.3 (I-JSON, RFC 7493 2.2): integers beyond +-(2**53 - 1) have no exact JSON number.
_INT_MAX = 2**53 - 1


def signatures_json(payload: bytes, signer: Signer) -> bytes:
    """Canonical JSON of the `signatures` list of a batch payload's DSSE envelope signed by `signer`."""
    envelope = sign_envelope(BatchPayload.PAYLOAD_TYPE, payload, [signer])
    return canonical_json([{"keyid": s.keyid, "sig": b64encode(s.sig)} for s in envelope.signatures])


def envelope_bytes(payload: bytes, signer: Signer) -> bytes:
    """Canonical JSON of the DSSE envelope of a batch payload signed by `signer`."""
    return envelope_of(payload, signatures_json(payload, signer))


# --- storage -----------------------------------------------------------------------------------------------


def _store(session: Session, collection_id: str) -> SqlNodeStore:
    return SqlNodeStore(session, CollectionNode, {"collection_id": collection_id})


def _nodes(session: Session, collection_id: str, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
    out = _store(session, collection_id).get_many(keys)
    if len(out) != len(set(keys)):
        raise SealError(f"collection {collection_id}: log nodes {sorted(set(keys) - set(out))[:3]} are missing")
    return out


_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_COPY_BATCH = (
    "COPY batches (collection_id, seq, payload, signatures, payload_sha256, adds, removes, sealed_at, audit_seq)"
    " FROM STDIN WITH (FORMAT binary)"
)


def _insert_batch(session: Session, row: dict[str, Any]) -> None:
    """Store one sealed batch through COPY in binary format: a batch of 50,000 entries is ~10 MB of payload,
    which an INSERT would send hex-escaped (twice the bytes) inside the statement text for the server to parse.
    psycopg2 has no binary COPY row writer (docs/adr/0003), so the one row is packed here."""
    micros = (row["sealed_at"] - _PG_EPOCH) // timedelta(microseconds=1)
    fields = (
        row["collection_id"].encode(),
        struct.pack("!q", row["seq"]),
        row["payload"],
        row["signatures"],
        row["payload_sha256"].encode(),
        struct.pack("!i", row["adds"]),
        struct.pack("!i", row["removes"]),
        struct.pack("!q", micros),
        struct.pack("!q", row["audit_seq"]),
    )
    data = io.BytesIO()
    data.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0) + struct.pack("!h", len(fields)))
    for value in fields:
        data.write(struct.pack("!i", len(value)))
        data.write(value)
    data.write(struct.pack("!h", -1))
    data.seek(0)
    dbapi = session.connection().connection.dbapi_connection
    if dbapi is None:
        raise SealError("no database connection to copy the batch into")
    cursor: Any = dbapi.cursor()  # psycopg2's cursor: copy_expert is not in the DB-API protocol
    try:
        cursor.copy_expert(_COPY_BATCH, data)
    finally:
        cursor.close()


def lock_collection(session: Session, collection_id: str) -> None:
    """Hold the collection's seal lock until the transaction ends."""
    session.execute(text("SELECT pg_advisory_xact_lock(:ns, hashtext(:c))"), {"ns": SEAL_LOCK, "c": collection_id})


def head(session: Session, collection_id: str) -> CollectionHead | None:
    return session.get(CollectionHead, collection_id)


def _checkpoint(
    session: Session,
    collection_id: str,
    size: int,
    root: bytes,
    *,
    hub_name: str,
    signers: Signers,
    now: datetime,
) -> tuple[str, int]:
    """Sign, audit and store a checkpoint; return the cosigned note and the audit seq."""
    origin = collections.origin(hub_name, collection_id)
    note = sign_checkpoint(Checkpoint(origin, size, root), signers.checkpoint)
    rec = auditlog.record(
        session,
        Actor.system("seal"),
        "collection.checkpoint",
        f"collection/{collection_id}",
        {"size": size, "root": b64encode(root), "note_sha256": hashlib.sha256(note.encode()).hexdigest()},
        now=now,
    )
    session.add(
        CollectionCheckpoint(
            collection_id=collection_id, size=size, root=root, note=note, created_at=now, audit_seq=rec.seq
        )
    )
    cosigned = cosign_note(note, cosigner_name(hub_name), signers.timestamp, int(now.timestamp()))
    return cosigned, rec.seq


def ensure_head(
    session: Session, collection_id: str, *, hub_name: str, signers: Signers, now: datetime
) -> CollectionHead:
    """The collection's head, creating it with a signed size-0 checkpoint if there is none."""
    current = session.get(CollectionHead, collection_id, with_for_update=True)
    if current is not None:
        return current
    empty = assemble_root(0, {})
    note, _ = _checkpoint(session, collection_id, 0, empty, hub_name=hub_name, signers=signers, now=now)
    current = CollectionHead(
        collection_id=collection_id,
        size=0,
        root=empty,
        payload_sha256=None,
        note=note,
        cosigned_at=now,
        sealed_at=None,
    )
    session.add(current)
    session.flush()
    return current


# One batch is the pending signal id range (lo, hi]. A cursor over pending_changes' primary key
# (declared: planned for a fast start, index order, no sort) skips to each `hi` without sending the ids; then
# one statement takes the range's pending rows out, records the batch seq of each add in `signal_seqs` (a narrow
# insert) and returns what the payload needs, which the pending rows carry: `signals` is not read. The cursor
# keeps its own snapshot: the rows deleted behind it are still there for it to count.
_BATCH_ENDS_PG = "SELECT signal_id FROM pending_changes WHERE collection_id = %(c)s ORDER BY signal_id"
_TAKE_AND_READ_PG = (
    "WITH p AS ("
    " DELETE FROM pending_changes"
    " WHERE collection_id = %(c)s AND signal_id > %(lo)s AND signal_id <= %(hi)s"
    " RETURNING signal_id, op, audit_seq, type, value, quality, tags, reason, provenance),"
    " added AS (INSERT INTO signal_seqs (signal_id, added_seq) SELECT signal_id, %(seq)s FROM p WHERE op = 'add')"
    " SELECT signal_id, op, audit_seq, type, value, quality, tags, reason, provenance FROM p"
)
_TAKE_AND_READ_REST_PG = _TAKE_AND_READ_PG.replace(" AND signal_id <= %(hi)s", "")
# Nothing the sealer runs is worth compiling: JIT (on by default in PostgreSQL 15) would compile any statement
# whose estimate crosses jit_above_cost. The take statement reads its pending rows twice from a tuplestore, about
# 9 MB a batch: with more than the default 4 MB of work_mem it stays in memory instead of going to a temporary
# file. For the seal's transaction only.
_SEAL_SETTINGS = "SET LOCAL jit = off; SET LOCAL work_mem = '32MB'"
_MARK_REMOVED_PG = "UPDATE signal_seqs SET removed_seq = %(seq)s WHERE signal_id = ANY(%(ids)s::varchar[])"

def _sealed_pages(
    session: Session, collection_id: str, size: int, first_seq: int
) -> Generator[Callable[[], Sequence[Any]]]:
    """Every pending change of the collection in signal id order, `size` at a time; page i's changes are
    recorded in `signal_seqs` with seq `first_seq + i` (added_seq for adds, removed_seq for removes) and are
    no longer pending once the page is taken; its removes' `removed_seq` once it is read.

    Each page is taken when the generator advances and read by calling what it yields, in order, each before
    the generator advances twice more: the taking is the database's work and the reading is Python's, so they
    can overlap. Rows are plain tuples (signal_id, op, audit_seq, type, value, quality, tags,
    removal_reason, provenance): SQLAlchemy's row objects cost more than the queries here.
    """
    dbapi = session.connection().connection.dbapi_connection
    if dbapi is None:
        raise SealError("no database connection to read pending changes from")
    ends: Any = dbapi.cursor(name=f"pending_{secrets.token_hex(6)}")  # psycopg2: a named (server-side) cursor
    # Two cursors in turn: a page's rows stay in its cursor (libpq holds the whole result) until the caller reads
    # them, while the next page's statement runs on the other one.
    cursors: list[Any] = [dbapi.cursor(), dbapi.cursor()]
    remove = Pending.REMOVE.value  # read once: an enum member's .value is a descriptor call, 50,000 times a batch

    def reader(cursor: Any, seq: int) -> Callable[[], Sequence[Any]]:
        def read() -> Sequence[Any]:
            # RETURNING has no order: sorted here (ids are unique, so tuples compare by id) rather than
            # spilling 50,000 rows to a sort on disk in the database.
            page = sorted(cursor.fetchall())
            removed = [row[0] for row in page if row[1] == remove]
            if removed:
                cursor.execute(_MARK_REMOVED_PG, {"seq": seq, "ids": removed})
                if cursor.rowcount != len(removed):
                    raise SealError(
                        f"collection {collection_id}: batch {seq}: {len(removed)} removes, {cursor.rowcount} marked"
                    )
            return page

        return read

    try:
        cursors[0].execute(_SEAL_SETTINGS)
        ends.itersize = 1
        ends.execute(_BATCH_ENDS_PG, {"c": collection_id})
        seq, lo = first_seq, ""  # every id sorts after the empty string
        while True:
            if size > 1:
                ends.scroll(size - 1)  # MOVE on the server: the ids in between are not sent
            end = ends.fetchone()
            args = {"seq": seq, "c": collection_id, "lo": lo, "hi": end[0] if end else None}
            cursor = cursors[seq % 2]
            cursor.execute(_TAKE_AND_READ_PG if end else _TAKE_AND_READ_REST_PG, args)
            if cursor.rowcount:
                yield reader(cursor, seq)
            if end is None:
                return
            seq, lo = seq + 1, end[0]
    finally:
        # The plain cursors are not closed here: the last page is read after the generator has finished. Each is
        # freed with the last reader that holds it.
        ends.close()


_VPDQ = "vpdq"


def _with_frames(session: Session, rows: Sequence[Any]) -> Sequence[Any]:
    """The pending rows with each vpdq add's value (the digest its signal is stored under) replaced by its
    canonical frames text, which the batch entry carries (docs/adr/0014). Such a batch is encoded by audit's
    encoder (the text's quotes are not plain strings): vpdq adds are few next to hashes of images."""
    digests = {row[4] for row in rows if row[3] == _VPDQ and row[1] == Pending.ADD.value}
    if not digests:
        return rows
    query = select(VpdqValue.sha256, VpdqValue.frames).where(VpdqValue.sha256.in_(sorted(digests)))
    texts: dict[str, str] = {d: t for d, t in session.execute(query)}
    if len(texts) != len(digests):
        raise SealError(f"vpdq frames missing for {sorted(digests - set(texts))[:3]}")
    return [
        (*row[:4], texts[row[4]], *row[5:]) if row[3] == _VPDQ and row[1] == Pending.ADD.value else row
        for row in rows
    ]


# A batch payload with vpdq adds stays under this many bytes: its envelope (base64, 4/3) must fit the kit's cap
# of a page of batches (64 MiB, partners/client/transport.py), to which the kit shrinks a page (one batch).
VPDQ_BATCH_BYTES = 24 << 20
_ENTRY_BYTES = 300  # an entry's JSON besides a vpdq value's text (id, type, audit_seq, tags)
_LONGEST_PENDING_VPDQ = text(
    "SELECT max(length(v.frames)) FROM pending_changes p JOIN vpdq_values v ON v.sha256 = p.value"
    " WHERE p.collection_id = :c AND p.op = 'add' AND p.type = 'vpdq'"
)


def _entries_for_videos(session: Session, collection_id: str, max_entries: int) -> int:
    """`max_entries`, or fewer when vpdq adds are pending: as many as fit `VPDQ_BATCH_BYTES` if every entry were
    as long as the longest pending vpdq text (batches are cut by entry count; docs/adr/0014)."""
    longest = session.scalar(_LONGEST_PENDING_VPDQ, {"c": collection_id})
    if not longest:
        return max_entries
    return max(1, min(max_entries, VPDQ_BATCH_BYTES // (int(longest) + _ENTRY_BYTES)))


def _encode_rows(
    collection_id: str, seq: int, prev: str | None, now: datetime, rows: Sequence[Any]
) -> tuple[bytes, int, int]:
    """RFC 8785 payload bytes of one batch straight from pending rows, and its add and remove counts.

    The template writes each entry with one f-string, members in RFC 8785 order (3.2.3); the strings it
    copies (ids, types, hex values, reasons, and tags stored as a canonical JSON list of plain strings) are
    checked once per batch to need no escaping, and the integers to be exact JSON numbers. Anything else
    falls back to building the payload and audit's encoder.
    """
    adds: list[str] = []
    removes: list[str] = []
    plain: list[str] = [collection_id] if prev is None else [collection_id, prev]
    numbers: list[int] = [seq]
    add = Pending.ADD.value  # read once: an enum member's .value is a descriptor call, 50,000 times a batch
    for sid, op, audit_seq, kind, value, quality, tags, reason, *provenance in rows:
        if op == add:
            if provenance and provenance[0] is not None:  # an upstream's add: rare, built by audit's encoder
                return _encode_slow(collection_id, seq, prev, now, rows)
            q = ""
            if quality is not None:
                q = f',"quality":{quality}'
                numbers.append(quality)
            if tags is not None:
                if not _TAGS_JSON.fullmatch(tags):
                    return _encode_slow(collection_id, seq, prev, now, rows)
                q += f',"tags":{tags}'
            adds.append(f'{{"audit_seq":{audit_seq},"id":"{sid}"{q},"type":"{kind}","value":"{value}"}}')
            plain += (sid, kind, value)
        else:
            removes.append(f'{{"audit_seq":{audit_seq},"id":"{sid}","reason":"{reason}"}}')
            plain += (sid, reason)
        numbers.append(audit_seq)
    sealed = format_time(now)
    plain.append(sealed)
    if not _SAFE.fullmatch("".join(plain)) or min(numbers) < -_INT_MAX or max(numbers) > _INT_MAX:
        return _encode_slow(collection_id, seq, prev, now, rows)
    prev_json = "null" if prev is None else f'"{prev}"'
    payload = (
        f'{{"adds":[{",".join(adds)}],"collection":"{collection_id}","prev":{prev_json},'
        f'"removes":[{",".join(removes)}],"sealed_at":"{sealed}","seq":{seq}}}'
    ).encode()
    return payload, len(adds), len(removes)


def _encode_slow(
    collection_id: str, seq: int, prev: str | None, now: datetime, rows: Sequence[Any]
) -> tuple[bytes, int, int]:
    batch = _batch_from(collection_id, seq, prev, now, rows)
    return batch.to_bytes(), len(batch.adds), len(batch.removes)


def _batch_from(
    collection_id: str, seq: int, prev: str | None, now: datetime, rows: Sequence[Any]
) -> BatchPayload:
    adds: list[BatchAdd] = []
    removes: list[BatchRemove] = []
    for sid, op, audit_seq, kind, value, quality, tags, reason, *provenance in rows:
        if op == Pending.ADD.value:
            parsed = tuple(json.loads(tags)) if tags else None
            origin = Provenance.from_dict(json.loads(provenance[0])) if provenance and provenance[0] else None
            adds.append(BatchAdd(sid, kind, value, int(audit_seq), quality, parsed, origin))
        else:
            removes.append(BatchRemove(sid, reason, int(audit_seq)))
    return BatchPayload(collection_id, seq, prev, now, tuple(adds), tuple(removes))


def seal_collection(
    session: Session,
    collection_id: str,
    *,
    hub_name: str,
    signers: Signers,
    max_entries: int,
    now: datetime,
) -> Sealed | None:
    """Seal every pending change of one collection into batches of at most `max_entries`; None if none.

    Runs in the caller's transaction: batches, nodes, signal seqs, checkpoint and audit entries commit
    together or not at all.
    """
    now = now.astimezone(UTC).replace(microsecond=0)
    rls.set_tenant(session, rls.SYSTEM)  # the hub's own work over every contributor's signals
    lock_collection(session, collection_id)
    # Writers of pending changes (submissions, retractions) take the audit lock first: holding it, the
    # pending set cannot change under us, so the changes read, marked and taken out below are the same rows.
    auditlog.next_seq(session)
    if not session.scalar(
        select(PendingChange.signal_id).where(PendingChange.collection_id == collection_id).limit(1)
    ):
        return None
    current = ensure_head(session, collection_id, hub_name=hub_name, signers=signers, now=now)
    store = _store(session, collection_id)
    frontier = frontier_from_nodes(current.size, _nodes(session, collection_id, frontier_keys(current.size)))
    prev = current.payload_sha256
    seqs: list[int] = []
    total_adds = total_removes = 0
    per_batch = _entries_for_videos(session, collection_id, max_entries)
    pages = _sealed_pages(session, collection_id, per_batch, frontier.size + 1)
    # A worker thread takes the next batch (psycopg2 releases the GIL while it waits on the server) while this
    # thread turns the current one's result into rows, encodes, hashes and signs it; nothing else is written
    # until the worker has finished, and psycopg2 serializes statements on the connection.
    ahead = ThreadPoolExecutor(max_workers=1)
    try:
        taken = next(pages, None)
        upcoming = ahead.submit(next, pages, None) if taken is not None else None
        while taken is not None and upcoming is not None:
            rows = _with_frames(session, taken())
            seq = frontier.size + 1
            payload, adds, removes = _encode_rows(collection_id, seq, prev, now, rows)
            digest = hashlib.sha256(payload).hexdigest()
            signatures = signatures_json(payload, signers.batch)
            taken = upcoming.result()
            rec = auditlog.record(
                session,
                Actor.system("seal"),
                "batch.seal",
                f"collection/{collection_id}",
                {"seq": seq, "payload_sha256": digest, "adds": adds, "removes": removes},
                now=now,
            )
            _insert_batch(
                session,
                {
                    "collection_id": collection_id,
                    "seq": seq,
                    "payload": payload,
                    "signatures": signatures,
                    "payload_sha256": digest,
                    "adds": adds,
                    "removes": removes,
                    "sealed_at": now,
                    "audit_seq": rec.seq,
                },
            )
            store.put_many(nodes_to_store(frontier, [leaf_hash(payload)]))
            seqs.append(seq)
            total_adds += adds
            total_removes += removes
            prev = digest
            upcoming = ahead.submit(next, pages, None) if taken is not None else None
    finally:
        ahead.shutdown(wait=True)
        pages.close()
    if not seqs:
        return None
    # The statements above bypassed the identity map: loaded seqs must be re-read, taken pending rows forgotten.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, SignalSeq):
            session.expire(obj)
        elif isinstance(obj, PendingChange) and (inspect(obj).identity or ("",))[0] == collection_id:
            session.expunge(obj)
    root = frontier.root()
    note, _ = _checkpoint(
        session, collection_id, frontier.size, root, hub_name=hub_name, signers=signers, now=now
    )
    current.size = frontier.size
    current.root = root
    current.payload_sha256 = prev
    current.note = note
    current.cosigned_at = now
    current.sealed_at = now
    session.flush()
    return Sealed(collection_id, seqs, total_adds, total_removes, frontier.size, root)


# One primary-key probe per collection with pending changes (a loose index scan), not a read of every pending
# row as DISTINCT would do.
_PENDING_COLLECTIONS = text(
    "WITH RECURSIVE c(id) AS ("
    " SELECT min(collection_id) FROM pending_changes"
    " UNION ALL SELECT (SELECT min(collection_id) FROM pending_changes WHERE collection_id > c.id)"
    " FROM c WHERE c.id IS NOT NULL)"
    " SELECT id FROM c WHERE id IS NOT NULL"
)


def collections_with_pending(session: Session) -> list[str]:
    rls.set_tenant(session, rls.SYSTEM)
    return list(session.scalars(_PENDING_COLLECTIONS))


def cosign(
    session: Session, collection_id: str, *, hub_name: str, signers: Signers, now: datetime
) -> CollectionHead:
    """Replace the head's cosignature with a fresh one at `now` (the tree may not have grown)."""
    now = now.astimezone(UTC).replace(microsecond=0)
    rls.set_tenant(session, rls.SYSTEM)
    lock_collection(session, collection_id)
    current = ensure_head(session, collection_id, hub_name=hub_name, signers=signers, now=now)
    if current.cosigned_at >= now:
        return current
    base = session.get(CollectionCheckpoint, (collection_id, current.size))
    if base is None:
        raise SealError(f"collection {collection_id}: checkpoint at size {current.size} is missing")
    current.note = cosign_note(base.note, cosigner_name(hub_name), signers.timestamp, int(now.timestamp()))
    current.cosigned_at = now
    session.flush()
    return current


# --- reads -------------------------------------------------------------------------------------------------


def root_at(session: Session, collection_id: str, size: int) -> bytes:
    return assemble_root(size, _nodes(session, collection_id, required_keys_for_root(size)))


def frontier_at(session: Session, collection_id: str, size: int) -> CompactRange:
    return frontier_from_nodes(size, _nodes(session, collection_id, frontier_keys(size)))


def consistency(session: Session, collection_id: str, size1: int, size2: int) -> list[bytes]:
    """Consistency proof from size1 to size2 (empty when equal or when size1 is 0)."""
    if size1 == 0 or size1 == size2:
        return []
    return assemble_consistency(
        size1, size2, _nodes(session, collection_id, required_keys_for_consistency(size1, size2))
    )


def batch(session: Session, collection_id: str, seq: int) -> Batch:
    row = session.get(Batch, (collection_id, seq))
    if row is None:
        raise NotFoundError(f"no batch {seq} in this collection")
    return row


def envelopes(session: Session, collection_id: str, first: int, last: int) -> Iterable[bytes]:
    """Envelope bytes of seq first..last, read a few at a time (batches can be megabytes each)."""
    seq = first
    while seq <= last:
        rows = session.execute(
            select(Batch.seq, Batch.payload, Batch.signatures)
            .where(Batch.collection_id == collection_id, Batch.seq >= seq, Batch.seq <= min(last, seq + 4))
            .order_by(Batch.seq)
        ).all()
        if not rows:
            raise SealError(f"collection {collection_id}: batch {seq} is missing")
        for s, payload, signatures in rows:
            if s != seq:
                raise SealError(f"collection {collection_id}: batch {seq} is missing")
            yield envelope_of(bytes(payload), bytes(signatures))
            seq += 1


def is_checkpoint(session: Session, collection_id: str, size: int, root: bytes) -> bool:
    row = session.get(CollectionCheckpoint, (collection_id, size))
    return row is not None and bytes(row.root) == root


def record_ack(
    session: Session, partner_id: str, collection_id: str, size: int, audit_seq: int, at: datetime
) -> None:
    """Keep a partner's latest ack of a collection (`feed_acks`), beside its `feed.ack` audit entry."""
    session.execute(
        text(
            "INSERT INTO feed_acks (partner_id, collection_id, size, audit_seq, acked_at)"
            " VALUES (:p, :c, :size, :seq, :at)"
            " ON CONFLICT (partner_id, collection_id) DO UPDATE"
            " SET size = excluded.size, audit_seq = excluded.audit_seq, acked_at = excluded.acked_at"
        ),
        {"p": partner_id, "c": collection_id, "size": size, "seq": audit_seq, "at": at},
    )


def heads_due(session: Session, stale_before: datetime) -> list[str]:
    """Collections whose checkpoint cosignature is older than `stale_before`, or that have no head yet."""
    stale = select(CollectionHead.collection_id).where(CollectionHead.cosigned_at < stale_before)
    missing = select(Collection.id).where(~Collection.id.in_(select(CollectionHead.collection_id)))
    return sorted(set(session.scalars(stale)) | set(session.scalars(missing)))
