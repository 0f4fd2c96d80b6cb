"""The hub's audit log: one append-only Merkle log of canonical-JSON entries.

`record()` is what every service calls: it takes the next sequence number and inserts the entry in the
caller's transaction, so an action and its audit entry commit together or not at all. Hashing the tree
and signing checkpoints is left to a scheduled job (`hub.ops.jobs.integrate_audit_log`), so writers never
serialize on it. Reads (entries, roots, proofs) go through `SqlNodeStore`: O(log N) rows in one query.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    insert,
    select,
    text,
    tuple_,
)
from sqlalchemy.orm import Session

from audit.canonical import canonical_json
from audit.errors import VerificationError
from audit.export import manifest_for, write_export
from audit.log import (
    NodeStore,
    assemble_consistency,
    assemble_inclusion,
    assemble_root,
    frontier_from_nodes,
    frontier_keys,
    nodes_to_store,
    required_keys_for_consistency,
    required_keys_for_inclusion,
    required_keys_for_root,
)
from audit.merkle import NodeKey
from audit.note import Checkpoint, sign_checkpoint
from audit.signing import Signer
from hub.db import AWAIT_DURABLE, EARLY_RELEASE, Base, utcnow
from hub.errors import BadRequestError, HubError, NotFoundError
from hub.transparency.keys import all_envelopes
from hub.transparency.models import AuditCheckpoint, AuditEntry, AuditHead, AuditNode

# Keys of the PostgreSQL advisory locks of the audit log (constants unique to their purpose).
AUDIT_INTEGRATE_LOCK = 0x68617368_6665_6402  # one integrator (checkpoint job) at a time

# Largest page of entries one read returns.
MAX_PAGE = 1000
# Leaf hashes read per query while integrating.
_INTEGRATE_CHUNK = 50_000
# Node keys per SELECT and node rows per INSERT of `SqlNodeStore`.
_NODE_READ_CHUNK = 500
_NODE_WRITE_CHUNK = 10_000


class AuditLogError(HubError):
    """The stored audit log is inconsistent (a missing node or entry): an operator must look."""


@dataclass(frozen=True)
class Actor:
    """Who did it: a partner's client, a staff user, the operator's CLI or the hub itself."""

    type: str  # partner | user | operator | system
    partner: str | None = None
    client: str | None = None
    user: str | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {"type": self.type}
        for key in ("partner", "client", "user", "name"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def system(cls, job: str) -> Actor:
        return cls(type="system", name=job)

    @classmethod
    def operator(cls) -> Actor:
        return cls(type="operator", name="cli")


@dataclass(frozen=True)
class Recorded:
    """What `record` wrote: the entry's sequence number and its exact bytes."""

    seq: int
    entry: bytes
    leaf_hash: bytes
    details: dict[str, Any] = field(default_factory=dict)


def next_seq(session: Session) -> int:
    """The next leaf index, taken under a lock held until the caller's transaction ends.

    Services that lock other rows before recording call this first, so every writer takes the audit lock
    before any other (no deadlocks).
    """
    query = select(AuditHead.next_seq).where(AuditHead.id == 1).with_for_update()
    return int(session.execute(query).scalar_one())


# The append is one call to a function of migration 0003 (take the next seq and the entry's time, never before
# the previous one's, splice them in, insert), sent on the DBAPI cursor (psycopg2 adapts bytes and aware
# datetimes itself): SQLAlchemy's statement and result layers cost more than the call.
_APPEND_PG = "SELECT seq, entry, leaf_hash FROM hashfed_audit_append(%s, %s, %s)"
# The same, asking for early lock release at commit (hub.db._await_durable, migration 0011): still one round trip.
_APPEND_PG_EARLY = "SELECT set_config('hashfed.early_release', 'on', true); " + _APPEND_PG


def record(
    session: Session,
    actor: Actor,
    action: str,
    subject: str,
    details: dict[str, Any] | None = None,
    *,
    now: datetime | None = None,
) -> Recorded:
    """Append one audit entry in the caller's transaction and return its sequence number.

    `subject` names what was acted on as `<kind>/<id>` (e.g. `partner/8c1e...`); `details` must hold no
    raw hash values or personal data (refer to hashes by id or `HubKeys.keyed_digest`). One call per
    request: a bulk action lists ids or their digest. Entry times never go backwards: an entry whose
    clock is behind its predecessor's takes its predecessor's time (the log order is the seq order).

    On PostgreSQL, in a session of `hub.db.make_session_factory` (early release on), the commit gives up the
    seq lock before its WAL flush unless the transaction publishes a signed statement, and `commit()` returns
    only after a flush behind it (`hub.db._await_durable`, migration 0011).
    """
    if not isinstance(subject, str) or not subject:
        raise ValueError("an audit subject is a non-empty string such as 'partner/<id>'")
    details = dict(details or {})
    # Everything but seq and time is encoded before a seq is taken: a bad entry never leaves a gap.
    head, tail = _entry_parts(actor.to_dict(), action, subject, details)
    moment = (now or utcnow()).astimezone(UTC).replace(microsecond=0)
    # One round trip: the database function takes the seq and time and inserts the entry (migration 0003).
    dbapi = session.connection().connection.dbapi_connection
    if dbapi is None:
        raise AuditLogError("no database connection to record the audit entry on")
    early = bool(session.info.get(EARLY_RELEASE))
    cursor: Any = dbapi.cursor()
    try:
        cursor.execute(_APPEND_PG_EARLY if early else _APPEND_PG, (head, tail, moment))
        seq, entry, leaf = cursor.fetchone()
    finally:
        cursor.close()
    if early:
        session.info[AWAIT_DURABLE] = (session.get_transaction(), dbapi)
    return Recorded(seq=int(seq), entry=bytes(entry), leaf_hash=bytes(leaf), details=details)


# What the database function fills in (migration 0003): the seq's digits after `head`, and after `tail` the time
# as a JSON string and the closing brace. The entry is encoded with seq 0 and an empty time and cut around them.
_NO_SEQ = b',"seq":0'
_NO_TIME_END = b'""}'


def _entry_parts(actor: dict[str, str], action: str, subject: str, details: dict[str, Any]) -> tuple[bytes, bytes]:
    """The RFC 8785 bytes of an entry (`audit.payloads.AuditEntry`) around its seq and time, from audit's encoder.

    RFC 8785 sorts the members action, actor, details, seq, subject, time (3.2.3), so with seq 0 the seq is the
    last `,"seq":0,"subject":` (a string value holds no unescaped quote) and the time is the last value.
    """
    entry = {"action": action, "actor": actor, "details": details, "seq": 0, "subject": subject, "time": ""}
    try:
        encoded = canonical_json(entry)
    except VerificationError as e:
        raise ValueError(f"audit entry is not canonical JSON: {e}") from e
    at = encoded.rindex(_NO_SEQ + b',"subject":')
    return encoded[: at + len(_NO_SEQ) - 1], encoded[at + len(_NO_SEQ) : -len(_NO_TIME_END)]


class SqlNodeStore(NodeStore):
    """`audit.log.NodeStore` over a table of (level, idx, hash) rows: `audit_nodes`, or one log's rows of a
    shared table (`collection_nodes` with `scope={"collection_id": ...}`). `get_many` is one query."""

    def __init__(
        self, session: Session, model: type[Base] = AuditNode, scope: Mapping[str, object] | None = None
    ) -> None:
        self.session = session
        self.model = model
        self.scope = dict(scope or {})
        cols = model.__table__.c
        self._select = select(cols.level, cols.idx, cols.hash).where(*(cols[k] == v for k, v in self.scope.items()))
        self._key = tuple_(cols.level, cols.idx)

    def get_many(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        unique = list(dict.fromkeys(keys))
        out: dict[NodeKey, bytes] = {}
        # Proofs and frontiers name O(log N) keys, so this is one query; the chunk bounds a caller's odd list.
        for start in range(0, len(unique), _NODE_READ_CHUNK):
            chunk = [tuple(k) for k in unique[start : start + _NODE_READ_CHUNK]]
            rows = self.session.execute(self._select.where(self._key.in_(chunk)))
            out.update(((level, idx), h) for level, idx, h in rows)
        return out

    def put_many(self, items: Iterable[tuple[NodeKey, bytes]]) -> None:
        rows = [{"level": k[0], "idx": k[1], "hash": h} for k, h in items]
        statement = insert(self.model).values(self.scope)  # the scope is bound once, not copied into each row
        for start in range(0, len(rows), _NODE_WRITE_CHUNK):
            self.session.execute(statement, rows[start : start + _NODE_WRITE_CHUNK])


def tree_size(session: Session) -> int:
    """The integrated size: the size of the latest signed audit checkpoint (0 before the first)."""
    latest = latest_checkpoint(session)
    return 0 if latest is None else latest.size


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    return session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1)).first()


def _nodes(session: Session, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
    nodes = SqlNodeStore(session).get_many(keys)
    if len(nodes) != len(set(keys)):
        missing = sorted(set(keys) - set(nodes))
        raise AuditLogError(f"audit tree nodes {missing[:3]} are missing; run the audit checkpoint job")
    return nodes


def _entry_column(session: Session, column: Any, start: int) -> Iterator[tuple[int, bytes]]:
    """(seq, `column`) of every entry from seq `start` on, in seq order, read in pages."""
    while True:
        rows = session.execute(
            select(AuditEntry.seq, column)
            .where(AuditEntry.seq >= start)
            .order_by(AuditEntry.seq)
            .limit(_INTEGRATE_CHUNK)
        ).all()
        yield from ((seq, value) for seq, value in rows)
        if len(rows) < _INTEGRATE_CHUNK:
            return
        start = rows[-1][0] + 1


@dataclass(frozen=True)
class Integrated:
    """What one integration did: the tree size before and after, and the new checkpoint (if any)."""

    old_size: int
    size: int
    checkpoint: str | None

    def __bool__(self) -> bool:
        """True when the run grew the tree or signed a checkpoint (what a scheduler log reports)."""
        return self.size != self.old_size or self.checkpoint is not None


def integrate(session: Session, origin: str, signer: Signer, now: datetime) -> Integrated:
    """Add the new entries' leaves to the stored tree and sign a checkpoint if it grew.

    Reads the frontier (O(log N) nodes), then the new leaf hashes in seq order, stopping at a gap, and
    writes the completed nodes. The caller holds the integrate lock (`lock_integrator`).
    """
    old = tree_size(session)
    frontier = frontier_from_nodes(old, _nodes(session, frontier_keys(old)))
    store = SqlNodeStore(session)
    batch: list[bytes] = []
    expected = old
    for seq, h in _entry_column(session, AuditEntry.leaf_hash, old):
        if seq != expected:
            break  # a gap can only be an entry not yet visible; integrate it next time
        batch.append(h)
        expected += 1
        if len(batch) >= _INTEGRATE_CHUNK:
            store.put_many(nodes_to_store(frontier, batch))
            batch = []
    if batch:
        store.put_many(nodes_to_store(frontier, batch))
    if frontier.size == old:
        return Integrated(old, old, None)
    root = frontier.root()
    note = sign_checkpoint(Checkpoint(origin, frontier.size, root), signer)
    session.add(AuditCheckpoint(size=frontier.size, root=root, note=note, created_at=now))
    session.flush()
    return Integrated(old, frontier.size, note)


def lock_integrator(session: Session) -> None:
    """Hold the integrate lock until the transaction ends."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_INTEGRATE_LOCK})


@dataclass(frozen=True)
class EntryPage:
    """Entries [start, end) as canonical bytes, and where the next page starts (None at the end)."""

    start: int
    entries: list[tuple[int, bytes]]
    next_start: int | None


def entries(session: Session, start: int, end: int | None = None, *, limit: int = MAX_PAGE) -> EntryPage:
    """Entries with start <= seq < end (end: every recorded entry), at most `limit` of them."""
    if start < 0 or (end is not None and end < start):
        raise BadRequestError("start must be >= 0 and end >= start")
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequestError(f"limit must be between 1 and {MAX_PAGE}")
    query = select(AuditEntry.seq, AuditEntry.entry).where(AuditEntry.seq >= start)
    if end is not None:
        query = query.where(AuditEntry.seq < end)
    rows = [(seq, bytes(e)) for seq, e in session.execute(query.order_by(AuditEntry.seq).limit(limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    return EntryPage(start, rows, rows[-1][0] + 1 if more else None)


def _check_size(session: Session, size: int) -> None:
    if size < 0:
        raise BadRequestError("a tree size is >= 0")
    integrated = tree_size(session)
    if size > integrated:
        raise NotFoundError(f"tree size {size} is beyond the latest audit checkpoint ({integrated})")


def root(session: Session, size: int) -> bytes:
    """The audit log's root at any integrated `size`: O(log size) nodes in one query."""
    _check_size(session, size)
    return assemble_root(size, _nodes(session, required_keys_for_root(size)))


@dataclass(frozen=True)
class InclusionProof:
    """Leaf `seq` is in the tree of `size` leaves whose root is `root`."""

    seq: int
    size: int
    leaf_hash: bytes
    root: bytes
    proof: list[bytes]


def inclusion_proof(session: Session, seq: int, size: int) -> InclusionProof:
    """Inclusion proof of entry `seq` in the integrated tree of `size` leaves."""
    if not 0 <= seq < size:
        raise BadRequestError("an inclusion proof needs 0 <= seq < size")
    _check_size(session, size)
    keys = required_keys_for_inclusion(seq, size)
    root_keys = required_keys_for_root(size)
    nodes = _nodes(session, list(dict.fromkeys([*keys, *root_keys, (0, seq)])))
    return InclusionProof(
        seq, size, nodes[(0, seq)], assemble_root(size, nodes), assemble_inclusion(seq, size, nodes)
    )


@dataclass(frozen=True)
class ConsistencyProof:
    """The tree of `size2` leaves (root2) extends the tree of `size1` leaves (root1)."""

    size1: int
    size2: int
    root1: bytes
    root2: bytes
    proof: list[bytes]


def consistency_proof(session: Session, size1: int, size2: int) -> ConsistencyProof:
    """Consistency proof between two integrated sizes (0 < size1 <= size2)."""
    if not 0 < size1 <= size2:
        raise BadRequestError("a consistency proof needs 0 < from <= to")
    _check_size(session, size2)
    keys = list(
        dict.fromkeys(
            [*required_keys_for_consistency(size1, size2), *required_keys_for_root(size1),
             *required_keys_for_root(size2)]
        )
    )
    nodes = _nodes(session, keys)
    return ConsistencyProof(
        size1,
        size2,
        assemble_root(size1, nodes),
        assemble_root(size2, nodes),
        assemble_consistency(size1, size2, nodes),
    )


def all_entries(session: Session) -> Iterator[bytes]:
    """Every entry's canonical bytes in seq order (for exports), read in pages."""
    for _seq, entry in _entry_column(session, AuditEntry.entry, 0):
        yield bytes(entry)


def checkpoint_notes(session: Session) -> list[str]:
    """Every signed audit checkpoint note, smallest size first."""
    return list(session.scalars(select(AuditCheckpoint.note).order_by(AuditCheckpoint.size)))


def export(
    session: Session, path: str, hub: str, now: datetime, *, checkpoint_interval_s: int | None = None
) -> tuple[int, int]:
    """Write the folder `hashfed-audit verify` checks (audit.export layout); return (entries, checkpoints).

    `checkpoint_interval_s` lets the verifier say when entries after the latest checkpoint will be covered."""
    data = list(all_entries(session))
    notes = checkpoint_notes(session)
    write_export(path, all_envelopes(session), data, notes, manifest_for(hub, now, checkpoint_interval_s))
    return len(data), len(notes)
