"""The partner's local mirror (SQLAlchemy; SQLite by default, PostgreSQL if configured).

Each verified page is applied in one transaction together with the new seq, frontier and checkpoint, so a
sync cut off at any point resumes from the last committed page without loss or duplication.

Schema: the kit creates it itself with `metadata.create_all` and records `SCHEMA_VERSION` in `kit_meta`; a
mirror of another version is refused (MirrorError) rather than guessed at. The tables split in two:

- trusted state (`keysets`, `collections`, `signals`, `applied`, `held`): changes only when something
  verified is applied; `dump()` returns it so tests can check a refused sync left it untouched;
- journals (`sync_status`, `alerts`): what happened, including refusals and fork evidence.

For the matcher (partners/matching): `active_signals()` and `changes(collection, after_seq)`, with `heads()`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from audit.canonical import format_time, parse_time
from audit.dsse import Envelope
from audit.merkle import CompactRange
from audit.payloads import CollectionDescriptor
from partners.client.errors import MirrorError
from partners.client.verify import ChunkSignal, CollectionState, KeptCheckpoint, VerifiedBatch

SCHEMA_VERSION = 1

metadata = MetaData()

kit_meta = Table(
    "kit_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

keysets = Table(
    "keysets",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("envelope", LargeBinary, nullable=False),  # exact bytes, re-verified from the pin on every run
)

collections = Table(
    "collections",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("descriptor", LargeBinary, nullable=False),  # signed envelope: thresholds come only from here
    Column("seq", BigInteger, nullable=False),
    Column("frontier", Text, nullable=False),  # CompactRange JSON: extends the log without the old leaves
    Column("prev", String(64)),
    Column("last_sealed_at", String(20)),
    Column("active", BigInteger, nullable=False),  # active signals: the base of the mass-removal share
    Column("checkpoint_note", Text),  # the last verified checkpoint, as served (evidence for a fork)
    Column("checkpoint_size", BigInteger),
    Column("checkpoint_root", String(64)),
    Column("cosigned_at", BigInteger),  # newest cosignature time kept: the freeze-attack floor
)

signals = Table(
    "signals",
    metadata,
    Column("collection", String(200), primary_key=True),
    Column("id", String(200), primary_key=True),
    Column("type", String(32), nullable=False),
    Column("value", Text, nullable=False),
    Column("quality", Integer),
    Column("tags", Text),
    Column("added_seq", BigInteger, nullable=False),
    Column("removed_seq", BigInteger),  # set when a batch removes it; the row stays for `changes`
    Column("reason", String(100)),
    Index("ix_signals_added", "collection", "added_seq"),
    Index("ix_signals_removed", "collection", "removed_seq"),
)

applied = Table(
    "applied",
    metadata,
    Column("collection", String(200), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("payload_sha256", String(64), nullable=False),
    Column("source", String(16), nullable=False),  # "batch" or "snapshot"
    Column("adds", Integer, nullable=False),
    Column("removes", Integer, nullable=False),
    Column("applied_at", String(20), nullable=False),
)

held = Table(
    "held",
    metadata,
    Column("collection", String(200), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("payload_sha256", String(64), nullable=False),
    Column("removes", BigInteger, nullable=False),
    Column("active", BigInteger, nullable=False),
    Column("held_at", String(20), nullable=False),
    Column("confirmed_at", String(20)),
)

sync_status = Table(
    "sync_status",
    metadata,
    Column("collection", String(200), primary_key=True),
    Column("last_attempt", String(20)),
    Column("last_success", String(20)),
    Column("last_error", Text),
    Column("last_error_at", String(20)),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("collection", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("kept_note", Text),
    Column("served_note", Text),
    Column("detected_at", String(20), nullable=False),
    Column("resolved_at", String(20)),
)

TRUSTED_TABLES = (keysets, collections, signals, applied, held)


@dataclass(frozen=True)
class ActiveSignal:
    """An active signal of the mirror, as the matcher indexes it."""

    collection: str
    signal_id: str
    type: str
    value: str


@dataclass(frozen=True)
class Change:
    """One applied change: `op` is "add" or "remove"; removes carry the value the add brought."""

    collection: str
    seq: int
    op: str
    signal_id: str
    type: str
    value: str


@dataclass(frozen=True)
class HeldBatch:
    """A batch held for an operator's confirmation."""

    collection: str
    seq: int
    payload_sha256: str
    removes: int
    active: int
    held_at: str
    confirmed_at: str | None


@dataclass(frozen=True)
class CollectionStatus:
    """What `hashfed-partner status` prints for one collection."""

    collection: str
    seq: int
    active: int
    checkpoint_size: int | None
    cosigned_at: int | None
    last_success: str | None
    last_error: str | None
    last_error_at: str | None
    held: HeldBatch | None
    open_alerts: int


def _tags(tags: Sequence[str] | None) -> str | None:
    return json.dumps(list(tags)) if tags is not None else None


def _now() -> str:
    return format_time(datetime.now(UTC))


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed page survives a killed process
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


_SIGNAL_COLUMNS = ("collection", "id", "type", "value", "quality", "tags", "added_seq")


def _held_row(conn: Connection, collection: str) -> Any:
    """The row of the batch held for `collection`, as a mapping, or None."""
    return conn.execute(select(held).where(held.c.collection == collection)).mappings().first()


def _insert_signals(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Bulk insert (collection, id, type, value, quality, tags, added_seq) rows through the DBAPI cursor.

    SQLAlchemy's per-row parameter processing dominated a million-row first sync; the rows here are
    already plain strings and integers, so the driver's executemany gets them as they are.
    """
    if not rows:
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    # Column names are constants and the placeholders the driver's: no data goes into the SQL text.
    marks = ", ".join([mark] * len(_SIGNAL_COLUMNS))
    sql = f"INSERT INTO signals ({', '.join(_SIGNAL_COLUMNS)}) VALUES ({marks})"  # noqa: S608
    conn.exec_driver_sql(sql, list(rows))


class Mirror:
    """The local mirror: trusted state per collection, the signals, and journals."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Mirror:
        """Open (creating if needed) the mirror at a SQLAlchemy URL."""
        engine = create_engine(url)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        mirror = cls(engine)
        mirror.create()
        return mirror

    def create(self) -> None:
        """Create the tables if missing and check the schema version."""
        try:
            metadata.create_all(self.engine)
            with self.engine.begin() as conn:
                version = conn.scalar(select(kit_meta.c.value).where(kit_meta.c.key == "schema_version"))
                if version is None:
                    conn.execute(insert(kit_meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
                elif version != str(SCHEMA_VERSION):
                    raise MirrorError(f"mirror schema version {version}, this kit knows {SCHEMA_VERSION}")
        except SQLAlchemyError as e:
            raise MirrorError(f"cannot open the mirror: {e.__class__.__name__}") from e

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    # Key sets --------------------------------------------------------------------------------------------

    def keyset_envelopes(self) -> list[bytes]:
        """Stored key set envelopes, from the pinned version up."""
        with self.engine.connect() as conn:
            return [bytes(r[0]) for r in conn.execute(select(keysets.c.envelope).order_by(keysets.c.version))]

    @staticmethod
    def _store_keysets(conn: Connection, new: Sequence[tuple[int, str, bytes]]) -> None:
        have = set(conn.scalars(select(keysets.c.version)))
        rows = [{"version": v, "sha256": d, "envelope": e} for v, d, e in new if v not in have]
        if rows:
            conn.execute(insert(keysets), rows)

    def store_keysets(self, new: Sequence[tuple[int, str, bytes]]) -> None:
        """Store verified key set versions (version, payload SHA-256, envelope) not stored yet."""
        with self.engine.begin() as conn:
            self._store_keysets(conn, new)

    # Trusted state ---------------------------------------------------------------------------------------

    def collection_ids(self) -> list[str]:
        """Collections the mirror holds state for."""
        with self.engine.connect() as conn:
            return list(conn.scalars(select(collections.c.id).order_by(collections.c.id)))

    def state(self, collection: str) -> tuple[CollectionState, int]:
        """The trusted state of a collection and its active signal count (empty if never synced)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(collections).where(collections.c.id == collection)).mappings().first()
        if row is None:
            return CollectionState.empty(collection), 0
        cp = None
        if row["checkpoint_note"] is not None:
            cp = KeptCheckpoint(
                row["checkpoint_note"],
                row["checkpoint_size"],
                bytes.fromhex(row["checkpoint_root"]),
                row["cosigned_at"],
            )
        state = CollectionState(
            collection,
            CompactRange.from_dict(json.loads(row["frontier"])),
            row["prev"],
            parse_time(row["last_sealed_at"]) if row["last_sealed_at"] else None,
            cp,
        )
        return state, int(row["active"])

    def descriptor(self, collection: str) -> CollectionDescriptor | None:
        """The verified descriptor stored with a collection (thresholds for the matcher)."""
        with self.engine.connect() as conn:
            raw = conn.scalar(select(collections.c.descriptor).where(collections.c.id == collection))
        if raw is None:
            return None
        return CollectionDescriptor.from_bytes(Envelope.from_json(bytes(raw)).payload)

    @staticmethod
    def _state_values(state: CollectionState) -> dict[str, Any]:
        cp = state.checkpoint
        return {
            "seq": state.size,
            "frontier": json.dumps(state.frontier.to_dict()),
            "prev": state.prev,
            "last_sealed_at": format_time(state.last_sealed_at) if state.last_sealed_at else None,
            "checkpoint_note": cp.note if cp else None,
            "checkpoint_size": cp.size if cp else None,
            "checkpoint_root": cp.root.hex() if cp else None,
            "cosigned_at": cp.cosigned_at if cp else None,
        }

    @staticmethod
    def _advance(
        conn: Connection,
        old_seq: int,
        state: CollectionState,
        descriptor: bytes,
        active_delta: int,
        reset: bool,
    ) -> None:
        """Move the collection row from `old_seq` to `state`; a concurrent writer makes this fail."""
        values = Mirror._state_values(state)
        exists = conn.scalar(select(collections.c.seq).where(collections.c.id == state.collection))
        if exists is None:
            if old_seq != 0:
                raise MirrorError(f"{state.collection}: expected seq {old_seq}, the mirror has none")
            conn.execute(
                insert(collections).values(id=state.collection, descriptor=descriptor, active=active_delta, **values)
            )
            return
        if exists != old_seq:
            raise MirrorError(f"{state.collection}: the mirror moved to seq {exists} meanwhile (concurrent sync?)")
        active = active_delta if reset else collections.c.active + active_delta
        conn.execute(
            update(collections)
            .where(collections.c.id == state.collection)
            .values(descriptor=descriptor, active=active, **values)
        )

    def apply_batches(
        self,
        old: CollectionState,
        batches: Sequence[VerifiedBatch],
        new: CollectionState,
        descriptor: bytes,
        keysets_new: Sequence[tuple[int, str, bytes]] = (),
        confirmed: bool = False,
    ) -> None:
        """Apply verified batches and store the new state, all in one transaction."""
        c = new.collection
        now = _now()
        try:
            with self.engine.begin() as conn:
                self._store_keysets(conn, keysets_new)
                delta = 0
                for b in batches:
                    p = b.payload
                    if p.adds:
                        ids = [a.id for a in p.adds]
                        clash = [
                            r
                            for part in _chunks(ids)
                            for r in conn.scalars(
                                select(signals.c.id).where(signals.c.collection == c, signals.c.id.in_(part))
                            )
                        ]
                        if clash or len(set(ids)) != len(ids):
                            raise MirrorError(f"{c}: batch {p.seq} adds signal ids already present")
                        _insert_signals(
                            conn,
                            [(c, a.id, a.type, a.value, a.quality, _tags(a.tags), p.seq) for a in p.adds],
                        )
                    if p.removes:
                        ids = [r.id for r in p.removes]
                        found = {
                            r
                            for part in _chunks(ids)
                            for r in conn.scalars(
                                select(signals.c.id).where(
                                    signals.c.collection == c,
                                    signals.c.id.in_(part),
                                    signals.c.removed_seq.is_(None),
                                )
                            )
                        }
                        if len(found) != len(ids) or len(set(ids)) != len(ids):
                            raise MirrorError(f"{c}: batch {p.seq} removes signals the mirror does not hold")
                        for r in p.removes:
                            conn.execute(
                                update(signals)
                                .where(signals.c.collection == c, signals.c.id == r.id)
                                .values(removed_seq=p.seq, reason=r.reason)
                            )
                    delta += len(p.adds) - len(p.removes)
                    conn.execute(
                        insert(applied).values(
                            collection=c,
                            seq=p.seq,
                            payload_sha256=b.sha256,
                            source="batch",
                            adds=len(p.adds),
                            removes=len(p.removes),
                            applied_at=now,
                        )
                    )
                self._advance(conn, old.size, new, descriptor, delta, reset=False)
                if confirmed or batches:
                    conn.execute(held.delete().where(held.c.collection == c, held.c.seq <= new.size))
        except SQLAlchemyError as e:
            raise MirrorError(f"{c}: cannot apply batches: {e.__class__.__name__}: {e}") from e

    def apply_snapshot(
        self,
        new: CollectionState,
        chunks: Iterable[list[ChunkSignal]],
        descriptor: bytes,
        keysets_new: Sequence[tuple[int, str, bytes]] = (),
    ) -> int:
        """Store every chunk of a verified snapshot and the state at its seq in one transaction.

        `chunks` is consumed inside the transaction (each chunk verified as it arrives); if it raises, the
        whole snapshot is rolled back. Returns the number of signals stored. A collection kept at seq 0 (synced
        while it was still empty: a checkpoint of size 0, no batch, no signal) starts from a snapshot too.
        """
        c = new.collection
        total = 0
        try:
            with self.engine.begin() as conn:
                if conn.scalar(select(collections.c.seq).where(collections.c.id == c)) not in (None, 0):
                    raise MirrorError(f"{c}: a snapshot only starts an empty collection")
                self._store_keysets(conn, keysets_new)
                for chunk in chunks:
                    if not chunk:
                        continue
                    seq = new.size
                    _insert_signals(conn, [(c, s.id, s.type, s.value, s.quality, _tags(s.tags), seq) for s in chunk])
                    total += len(chunk)
                conn.execute(
                    insert(applied).values(
                        collection=c,
                        seq=new.size,
                        payload_sha256=new.prev or "",
                        source="snapshot",
                        adds=total,
                        removes=0,
                        applied_at=_now(),
                    )
                )
                self._advance(conn, 0, new, descriptor, total, reset=True)
        except SQLAlchemyError as e:
            raise MirrorError(f"{c}: cannot store the snapshot: {e.__class__.__name__}") from e
        return total

    def store_checkpoint(
        self,
        old: CollectionState,
        new: CollectionState,
        descriptor: bytes,
        keysets_new: Sequence[tuple[int, str, bytes]] = (),
    ) -> None:
        """Keep a newer verified checkpoint (and descriptor) when no batch was applied."""
        try:
            with self.engine.begin() as conn:
                self._store_keysets(conn, keysets_new)
                self._advance(conn, old.size, new, descriptor, 0, reset=False)
        except SQLAlchemyError as e:
            raise MirrorError(f"{new.collection}: cannot store the checkpoint: {e.__class__.__name__}") from e

    def store_descriptor(self, collection: str, descriptor: bytes) -> bool:
        """Keep a newer verified descriptor of a collection already in the mirror (its settings changed while
        its log did not grow); True if it replaced the one stored."""
        try:
            with self.engine.begin() as conn:
                done = conn.execute(
                    update(collections)
                    .where(collections.c.id == collection, collections.c.descriptor != descriptor)
                    .values(descriptor=descriptor)
                )
        except SQLAlchemyError as e:
            raise MirrorError(f"{collection}: cannot store the descriptor: {e.__class__.__name__}") from e
        return bool(done.rowcount)

    # Held batches ----------------------------------------------------------------------------------------

    def hold(self, collection: str, seq: int, payload_sha256: str, removes: int, active: int) -> None:
        """Record a batch held for confirmation (replacing an older hold of the same collection)."""
        with self.engine.begin() as conn:
            row = _held_row(conn, collection)
            if row is not None and row["seq"] == seq and row["payload_sha256"] == payload_sha256:
                return  # the same batch, held again: keep when it was first held (and any confirmation)
            conn.execute(held.delete().where(held.c.collection == collection))
            conn.execute(
                insert(held).values(
                    collection=collection,
                    seq=seq,
                    payload_sha256=payload_sha256,
                    removes=removes,
                    active=active,
                    held_at=_now(),
                    confirmed_at=None,
                )
            )

    def held(self, collection: str) -> HeldBatch | None:
        """The batch held for a collection, if any."""
        with self.engine.connect() as conn:
            row = _held_row(conn, collection)
        return HeldBatch(**row) if row else None

    def all_held(self) -> list[HeldBatch]:
        """Every held batch."""
        with self.engine.connect() as conn:
            return [HeldBatch(**r) for r in conn.execute(select(held).order_by(held.c.collection)).mappings()]

    def confirm(self, collection: str, seq: int | None = None) -> HeldBatch:
        """An operator confirms the held batch of a collection (optionally checking its seq)."""
        with self.engine.begin() as conn:
            row = _held_row(conn, collection)
            if row is None:
                raise MirrorError(f"{collection}: no batch is held")
            if seq is not None and row["seq"] != seq:
                raise MirrorError(f"{collection}: the held batch is seq {row['seq']}, not {seq}")
            now = _now()
            conn.execute(update(held).where(held.c.collection == collection).values(confirmed_at=now))
            return HeldBatch(**{**row, "confirmed_at": now})

    # Journals --------------------------------------------------------------------------------------------

    def record_attempt(self, collection: str, error: str | None) -> None:
        """Journal a sync attempt: success (error None) or the error that stopped it."""
        now = _now()
        values: dict[str, Any] = {"last_attempt": now}
        if error is None:
            values["last_success"] = now
        else:
            values.update(last_error=error, last_error_at=now)
        with self.engine.begin() as conn:
            done = conn.execute(update(sync_status).where(sync_status.c.collection == collection).values(**values))
            if done.rowcount == 0:
                conn.execute(insert(sync_status).values(collection=collection, **values))

    def alert(self, collection: str, kind: str, detail: str, kept_note: str | None, served_note: str | None) -> None:
        """Keep evidence of a fork (both notes) or another alert; the collection halts until resolved."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(alerts).values(
                    collection=collection,
                    kind=kind,
                    detail=detail,
                    kept_note=kept_note,
                    served_note=served_note,
                    detected_at=_now(),
                )
            )

    def open_alerts(self, collection: str | None = None) -> list[dict[str, Any]]:
        """Unresolved alerts, oldest first."""
        q = select(alerts).where(alerts.c.resolved_at.is_(None)).order_by(alerts.c.id)
        if collection is not None:
            q = q.where(alerts.c.collection == collection)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def resolve_alerts(self, collection: str) -> int:
        """An operator clears a collection's alerts (after investigating); returns how many."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(alerts)
                .where(alerts.c.collection == collection, alerts.c.resolved_at.is_(None))
                .values(resolved_at=_now())
            )
            return int(done.rowcount or 0)

    def status(self) -> list[CollectionStatus]:
        """Per collection: seq, hashes held, checkpoint, last success and error, held batch, alerts."""
        with self.engine.connect() as conn:
            rows = {r["id"]: r for r in conn.execute(select(collections)).mappings()}
            stats = {r["collection"]: r for r in conn.execute(select(sync_status)).mappings()}
            helds = {r["collection"]: HeldBatch(**r) for r in conn.execute(select(held)).mappings()}
            counts: dict[str, int] = dict(
                conn.execute(
                    select(alerts.c.collection, func.count())
                    .where(alerts.c.resolved_at.is_(None))
                    .group_by(alerts.c.collection)
                ).all()
            )
        out = []
        for c in sorted(set(rows) | set(stats) | set(helds)):
            row, st = rows.get(c), stats.get(c)
            out.append(
                CollectionStatus(
                    c,
                    int(row["seq"]) if row else 0,
                    int(row["active"]) if row else 0,
                    row["checkpoint_size"] if row else None,
                    row["cosigned_at"] if row else None,
                    st["last_success"] if st else None,
                    st["last_error"] if st else None,
                    st["last_error_at"] if st else None,
                    helds.get(c),
                    int(counts.get(c, 0)),
                )
            )
        return out

    # For the matcher -------------------------------------------------------------------------------------

    def heads(self) -> dict[str, int]:
        """The applied seq of each collection: where `changes` consumers resume."""
        with self.engine.connect() as conn:
            return {r[0]: int(r[1]) for r in conn.execute(select(collections.c.id, collections.c.seq))}

    def active_signals(
        self, collection: str | None = None, types: Sequence[str] | None = None
    ) -> Iterator[ActiveSignal]:
        """Every active signal (collection, signal id, type, value), streamed in (collection, id) order."""
        q = select(signals.c.collection, signals.c.id, signals.c.type, signals.c.value).where(
            signals.c.removed_seq.is_(None)
        )
        if collection is not None:
            q = q.where(signals.c.collection == collection)
        if types is not None:
            q = q.where(signals.c.type.in_(list(types)))
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=10_000).execute(q.order_by(signals.c.collection, signals.c.id))
            for r in result:
                yield ActiveSignal(r[0], r[1], r[2], r[3])

    def changes(self, collection: str, after_seq: int, upto_seq: int | None = None) -> Iterator[Change]:
        """Adds and removes applied after `after_seq` (up to `upto_seq`), in seq order, adds first per seq.

        A collection started from a snapshot at seq S reports its snapshot signals as adds at S.
        """
        cols = (signals.c.id, signals.c.type, signals.c.value, signals.c.added_seq, signals.c.removed_seq)
        upto = upto_seq if upto_seq is not None else 2**62
        added = and_(signals.c.added_seq > after_seq, signals.c.added_seq <= upto)
        removed = and_(signals.c.removed_seq > after_seq, signals.c.removed_seq <= upto)
        with self.engine.connect() as conn:
            events: list[Change] = []
            for sid, typ, value, a_seq, r_seq in conn.execute(
                select(*cols).where(signals.c.collection == collection, added | removed)
            ):
                if after_seq < a_seq <= upto:
                    events.append(Change(collection, int(a_seq), "add", sid, typ, value))
                if r_seq is not None and after_seq < r_seq <= upto:
                    events.append(Change(collection, int(r_seq), "remove", sid, typ, value))
        events.sort(key=lambda e: (e.seq, e.op != "add", e.signal_id))
        yield from events

    # Tests and tools -------------------------------------------------------------------------------------

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of the trusted tables, sorted: equal dumps mean an unchanged mirror."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        with self.engine.connect() as conn:
            for t in TRUSTED_TABLES:
                rows = [tuple(r) for r in conn.execute(select(t))]
                out[t.name] = sorted(rows, key=repr)
        return out
