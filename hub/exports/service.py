"""Transparency exports: draw a period's bundle from the audit log, the reports and the signals, streamed.

The bundle format and every aggregate are defined once, in `audit.exports` (what a regulator verifies
with); this module only reads the database in seq order and feeds the rows to it. Memory stays bounded:
rows come from server-side cursors, CSV twins go through a temporary file, and the aggregator keeps counters
and one integer per actioned record.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from isal import isal_zlib
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from audit import exports as bundle
from audit.canonical import canonical_json, format_time
from audit.dsse import Envelope, sign_envelope
from audit.merkle import hash_ranges, keys_for_ranges
from audit.payloads import AuditEntry
from hub import rls
from hub.db import utcnow
from hub.errors import ConflictError, NotFoundError
from hub.exports.models import Export
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor
from hub.transparency.keys import HubKeys, all_envelopes
from hub.transparency.models import AuditCheckpoint

_FETCH = 10_000  # rows per server-side cursor fetch
_ENTRY_FETCH = 200  # audit entries per fetch: a bulk report entry is about 100 KB
_REPORT_ENTRIES = (b'{"action":"reports.submit"', b'{"action":"report.outcome"')


def _deflate() -> Any:
    """Raw deflate at ISA-L's level 1: a bundle's members compress four times faster than with zlib's level 1
    (docs/perf.md). Always this one: a bundle written again must have the same bytes."""
    return isal_zlib.compressobj(1, isal_zlib.DEFLATED, -15)


class PeriodOpenError(ConflictError):
    """The period has not closed in a signed audit checkpoint yet."""


@dataclass(frozen=True)
class Drawn:
    """What drawing a bundle produced: the signed manifest and the published aggregates."""

    manifest: dict[str, Any]
    envelope: bytes
    aggregates: dict[str, Any]


class _Digests:
    """HMAC-SHA256 under a key of this export only (derived from the hub secret): one export's digests of a
    signal or report cannot be linked with another's, and only the hub can compute them."""

    def __init__(self, keys: HubKeys, export_id: str) -> None:
        key = bytes.fromhex(keys.keyed_digest(f"transparency-export\x00{export_id}"))
        # HMAC (RFC 2104) from the two padded-key states, copied per message: a million digests in C calls only
        # (hmac.new(...).copy() and the one-shot hmac.digest cost several times more per call).
        block = key.ljust(64, b"\x00")  # SHA-256's block; the derived key is 32 bytes
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        if len(key) > 64 or self._mac(b"check") != hmac.new(key, b"check", "sha256").hexdigest():
            raise ValueError("the export key is not a valid HMAC-SHA256 key")
        # Records name the same signals again and again: a bounded cache of their digests.
        self.signal = functools.lru_cache(maxsize=1 << 16)(lambda sid: self("signal", sid))

    def _mac(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def __call__(self, kind: str, value: str) -> str:
        return self._mac(f"{kind}\x00{value}".encode())


def _entry_time(session: Session, seq: int) -> datetime:
    t = session.scalar(text("SELECT recorded_at FROM audit_entries WHERE seq = :s"), {"s": seq})
    if t is None:
        raise auditlog.AuditLogError(f"audit entry {seq} is missing")
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def first_at_or_after(session: Session, when: datetime, total: int) -> int:
    """The smallest seq whose entry time is >= `when` (`total` if none): entry times never go backwards, so a
    binary search over the primary key finds it in O(log N) lookups, without an index on time."""
    lo, hi = 0, total
    while lo < hi:
        mid = (lo + hi) // 2
        if _entry_time(session, mid) < when:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _stream(session: Session, sql: str, params: dict[str, Any]) -> Iterator[Any]:
    result = session.execute(text(sql).execution_options(stream_results=True, max_row_buffer=_FETCH), params)
    yield from result


# Times in format_time's form, by to_char.
_RECORDS = (
    "SELECT o.audit_seq, o.report_sha256, o.partner_id, o.report_id, o.version, o.outcome,"
    " to_char(a.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " r.collection_id, c.category, r.signal_id, s.type, r.surface,"
    " to_char(r.matched_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " to_char(o.actioned_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " r.automated_detection, o.automated_decision"
    " FROM report_outcomes o"
    " JOIN reports r ON r.partner_id = o.partner_id AND r.report_id = o.report_id"
    " JOIN audit_entries a ON a.seq = o.audit_seq"
    " JOIN signals s ON s.id = r.signal_id"
    " JOIN collections c ON c.id = r.collection_id"
    " WHERE o.audit_seq >= %(first)s AND o.audit_seq < %(end)s"
    " ORDER BY o.audit_seq, o.report_sha256"
)


def _raw_stream(session: Session, sql: str, params: dict[str, Any], fetch: int = _FETCH) -> Iterator[tuple[Any, ...]]:
    """Rows of a query as plain tuples from a server-side cursor of the session's own connection (the
    SQLAlchemy row layer costs more than the rest of a record)."""
    dbapi: Any = session.connection().connection.dbapi_connection
    cursor = dbapi.cursor(name=f"export_{uuid.uuid4().hex}")
    try:
        cursor.itersize = fetch
        cursor.execute(sql, params)
        yield from cursor
    finally:
        cursor.close()


_ADDED = (
    "SELECT added_audit_seq, id, collection_id, type FROM signals"
    " WHERE added_audit_seq >= :first AND added_audit_seq < :end ORDER BY added_audit_seq, id"
)


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


class _Twin:
    """A CSV twin written to a temporary file while its JSON Lines member streams into the zip."""

    def __init__(self, codec: bundle.Codec) -> None:
        self.file: IO[bytes] = tempfile.TemporaryFile()
        self.file.write(codec.header.encode())
        self._lines: list[str] = []

    def add(self, line: str) -> None:
        self._lines.append(line)
        if len(self._lines) >= _FETCH:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            self.file.write("".join(self._lines).encode())
            self._lines = []

    def chunks(self) -> Iterator[bytes]:
        self.flush()
        self.file.seek(0)
        while chunk := self.file.read(1 << 20):
            yield chunk
        self.file.close()


def draw(
    session: Session,
    keys: HubKeys,
    out: IO[bytes],
    *,
    export_id: str,
    period: bundle.Period,
    created_at: datetime,
    checkpoint: AuditCheckpoint,
    first: int,
    end: int,
    keyset_version: int,
    threshold: int,
    envelope: bytes | None = None,
) -> Drawn:
    """Write the bundle of `period` drawn at `checkpoint` to `out`; sign its manifest unless `envelope` (the
    stored one, when a bundle is written again) is given."""
    rls.set_tenant(session, rls.SYSTEM)  # an export counts every partner's reports and signals
    # The streamed reads below are read to the end: plan them for all rows (hash joins and one sort), not for a
    # cursor's first rows (nested loops over a million outcomes).
    session.execute(text("SET LOCAL cursor_tuple_fraction = 1.0"))
    # A million outcomes joined and sorted: in memory rather than in 32 spilled batches (this transaction only).
    session.execute(text("SET LOCAL work_mem = '256MB'"))
    writer = bundle.BundleWriter(out, created_at, _deflate)
    keysets = all_envelopes(session)[:keyset_version]
    for v, env in enumerate(keysets, start=1):
        writer.write(f"keys/{v}.json", [env])
    writer.write("checkpoint.note", [checkpoint.note.encode()])
    agg = bundle.Aggregator()
    digest = _Digests(keys, export_id)
    lo, hi = bundle.carried_range(first, end)

    # The disputes decided in the period but opened before it: their dispute.open entries are carried too.
    earlier = _earlier_openings(session, first, end, lo)

    # Pass 1: the carried entries; what the later passes need from them is small (seqs, signal events of
    # removals and governance decisions, dispute events).
    submits: set[int] = set()
    others: list[tuple[int, str, str]] = []  # seq, event, signal id: every signal event but the submissions'
    by_seq: list[tuple[int, str]] = []  # entries whose signal events the hub finds by seq (case.withdraw)
    disputes: list[tuple[Any, ...]] = []
    opened: dict[str, bundle.Opened] = {}

    def entries() -> Iterator[bytes]:
        rows = _raw_stream(session, "SELECT seq, entry FROM audit_entries WHERE seq = ANY(%(earlier)s) OR"
                           " (seq >= %(lo)s AND seq < %(hi)s) ORDER BY seq", {"earlier": earlier, "lo": lo, "hi": hi},
                           _ENTRY_FETCH)
        for seq, data in rows:
            raw = bytes(data)
            yield bundle.entry_line(seq, raw)
            # Canonical JSON puts "action" first: report entries (most of a period) need no parsing here.
            if raw.startswith(_REPORT_ENTRIES):
                continue
            e: AuditEntry = bundle.parse_entry(raw)
            if e.action == "dispute.open":
                opened[e.subject.split("/", 1)[-1]] = bundle.Opened.of(e)
            if not first <= seq < end:
                continue
            agg.entry(e)
            kind = bundle.dispute_event(e)
            if kind is not None:
                dispute_id = e.subject.split("/", 1)[-1] if kind == "opened" else str(e.details["dispute"])
                row = bundle.dispute_row(seq, kind, format_time(e.time), digest("dispute", dispute_id),
                                         opened[dispute_id])
                agg.dispute(row)
                disputes.append(row)
            expect = bundle.signal_events(e)
            if expect is None:
                continue
            if expect.event == "added":
                submits.add(seq)
            elif expect.ids is None:
                by_seq.append((seq, expect.event))
            else:
                others.extend((seq, expect.event, sid) for sid in expect.ids)

    writer.write("entries.jsonl", entries())
    ranges = bundle.multiproof_ranges(lo, hi, checkpoint.size, earlier)
    writer.write(
        "proof.json",
        [bundle.proof_document(checkpoint.size, lo, hi, _range_hashes(session, ranges), earlier)],
    )
    for seq, event in by_seq:
        others.extend((seq, event, sid) for sid in _removed_by(session, seq))
    others.sort()

    # Pass 2: one record per report outcome recorded in the period, in audit seq order.
    records = 0
    twin = _Twin(bundle.RECORDS)
    values, both, add, mac = bundle.record_values, bundle.RECORDS.both, agg.record, digest._mac

    def record_lines() -> Iterator[str]:
        nonlocal records
        for (seq, sha, partner, report_id, version, outcome, recorded, collection, category, signal_id,
             signal_type, surface, matched, actioned, detected, decided) in _raw_stream(
                 session, _RECORDS, {"first": first, "end": end}):
            rec = values(
                seq, sha, mac(f"report\x00{partner}\x00{report_id}".encode()), version, outcome, recorded, partner,
                collection, category, digest.signal(signal_id), signal_type, surface, matched, actioned, detected,
                decided,
            )
            add(rec)
            as_json, as_csv = both(rec)
            twin.add(as_csv)
            records += 1
            yield as_json

    writer.write("records.jsonl", record_lines())
    writer.write("records.csv", twin.chunks())

    # Pass 3: signal events: additions from the signals a submission entry made, the rest from their entries.
    events = 0
    twin = _Twin(bundle.SIGNALS)
    signal_of = _signals(session, [r[2] for r in others])

    def signal_lines() -> Iterator[str]:
        nonlocal events
        pending = iter(others)
        nxt = next(pending, None)

        def event(seq: int, kind: str, sid: str, collection: str, signal_type: str) -> str:
            nonlocal events
            row = (seq, kind, digest("signal", sid), collection, signal_type)
            agg.signal(row)
            twin.add(bundle.SIGNALS.csv(row))
            events += 1
            return bundle.SIGNALS.json(row)

        for seq, sid, collection, signal_type in _stream(session, _ADDED, {"first": first, "end": end}):
            if seq not in submits:
                continue
            while nxt is not None and nxt[0] < seq:
                yield event(nxt[0], nxt[1], nxt[2], *signal_of[nxt[2]])
                nxt = next(pending, None)
            yield event(seq, "added", sid, collection, signal_type)
        while nxt is not None:
            yield event(nxt[0], nxt[1], nxt[2], *signal_of[nxt[2]])
            nxt = next(pending, None)

    writer.write("signals.jsonl", signal_lines())
    writer.write("signals.csv", twin.chunks())

    # Pass 4: dispute events, gathered in pass 1 (a period holds far fewer than reports).
    writer.write("disputes.jsonl", [bundle.DISPUTES.json(row) for row in disputes])
    writer.write("disputes.csv", [bundle.DISPUTES.header, *(bundle.DISPUTES.csv(row) for row in disputes)])

    published = agg.published(threshold)
    writer.write("aggregates.json", [canonical_json(bundle.aggregates_document(period, threshold, published))])
    writer.write("aggregates.csv", [bundle.aggregates_csv(published).encode()])
    manifest = bundle.manifest_document(
        hub=keys.hub_name, export_id=export_id, period=period, created_at=created_at,
        checkpoint_size=checkpoint.size, checkpoint_root=checkpoint.root, first=first, end=end,
        keysets=len(keysets), threshold=threshold,
        counts={"records": records, "signal_events": events, "dispute_events": len(disputes), "entries": end - first},
        files=writer.files,
    )
    payload = canonical_json(manifest)
    if envelope is None:
        envelope = sign_envelope(bundle.EXPORT_TYPE, payload, [keys.signer("export")]).to_json()
    elif Envelope.from_json(envelope).payload != payload:
        raise ConflictError("the export's data changed since it was made: it cannot be written again as signed")
    writer.finish(payload, envelope)
    return Drawn(manifest, envelope, published)


def _signals(session: Session, signal_ids: list[str]) -> dict[str, tuple[str, str]]:
    """The collection and type of each signal named by an entry."""
    out: dict[str, tuple[str, str]] = {}
    wanted = sorted(set(signal_ids))
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        rows = session.execute(text("SELECT id, collection_id, type FROM signals WHERE id = ANY(:ids)"), {"ids": chunk})
        out.update((sid, (c, t)) for sid, c, t in rows)
    missing = set(wanted) - set(out)
    if missing:
        raise auditlog.AuditLogError(f"signals {sorted(missing)[:3]} named by audit entries are missing")
    return out


def _removed_by(session: Session, seq: int) -> list[str]:
    """The signals an entry removed (a case withdrawal names more than a hundred only by their digest)."""
    return list(session.scalars(text("SELECT id FROM signals WHERE removed_audit_seq = :s ORDER BY id"), {"s": seq}))


def _earlier_openings(session: Session, first: int, end: int, lo: int) -> list[int]:
    """The dispute.open entries, before the carried run, of disputes decided in the period [first, end)."""
    return list(session.scalars(
        text(
            "SELECT DISTINCT d.open_audit_seq FROM decisions x JOIN disputes d ON d.id = x.subject_id"
            " WHERE x.subject_type = 'dispute' AND x.audit_seq >= :first AND x.audit_seq < :end"
            " AND d.open_audit_seq < :lo ORDER BY d.open_audit_seq"
        ),
        {"first": first, "end": end, "lo": lo},
    ))


def _range_hashes(session: Session, ranges: list[tuple[int, int]]) -> list[bytes]:
    """The hash of each subtree [a, b) from the stored audit tree: O(log N) nodes in one query."""
    store = auditlog.SqlNodeStore(session)
    keys = keys_for_ranges(ranges)
    nodes = store.get_many(keys)
    return hash_ranges(ranges, nodes)


class _Counting:
    """A write-only file that only hashes and counts: drawing a bundle to learn its digest stores nothing."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        return None


def create(
    session: Session,
    keys: HubKeys,
    period: bundle.Period,
    *,
    actor: Actor,
    partner_id: str | None,
    threshold: int,
    now: datetime | None = None,
    publish: bool = False,
) -> Export:
    """Draw the period's bundle at the latest audit checkpoint, record the export (audited), return its row.

    409 when the period has not closed in a signed audit checkpoint: the first entry at or after the period's
    end must be in it, so that no entry can still join the period."""
    now = (now or utcnow()).astimezone(UTC).replace(microsecond=0)
    if period.end > now:
        raise PeriodOpenError(f"the period {period.label} ends at {format_time(period.end)}, after now")
    checkpoint = auditlog.latest_checkpoint(session)
    total = int(session.scalar(select(func.count()).select_from(text("audit_entries"))) or 0)
    first = first_at_or_after(session, period.start, total)
    end = first_at_or_after(session, period.end, total)
    if checkpoint is None or end >= checkpoint.size:
        raise PeriodOpenError(
            f"the period {period.label} has not closed in a signed audit checkpoint yet (it needs an entry at "
            "or after its end, and the next audit checkpoint): try again in a minute"
        )
    export_id = str(uuid.uuid4())
    keyset_version = keys.keyset().version
    sink = _Counting()
    drawn = draw(
        session, keys, sink,  # type: ignore[arg-type]
        export_id=export_id, period=period, created_at=now, checkpoint=checkpoint, first=first, end=end,
        keyset_version=keyset_version, threshold=threshold,
    )
    sha = sink.digest.hexdigest()
    rec = auditlog.record(
        session,
        actor,
        "export.create",
        f"export/{export_id}",
        {
            "period": period.to_dict(),
            "checkpoint_size": checkpoint.size,
            "entries": {"first": first, "end": end},
            "bundle_sha256": sha,
            "manifest_sha256": hashlib.sha256(canonical_json(drawn.manifest)).hexdigest(),
            "published": publish,
        },
        now=now,
    )
    row = Export(
        id=export_id, period_label=period.label, period_from=period.start, period_to=period.end, created_at=now,
        partner_id=partner_id, checkpoint_size=checkpoint.size, first_seq=first, end_seq=end,
        keyset_version=keyset_version, threshold=threshold, envelope=drawn.envelope,
        aggregates=canonical_json(drawn.aggregates).decode(), bundle_sha256=sha, bundle_bytes=sink.size,
        published=publish, audit_seq=rec.seq,
    )
    session.add(row)
    session.flush()
    return row


def get(session: Session, export_id: str) -> Export:
    try:
        uuid.UUID(export_id)
    except ValueError:
        raise NotFoundError("no such export") from None
    row = session.get(Export, export_id)
    if row is None:
        raise NotFoundError("no such export")
    return row


def list_exports(session: Session, limit: int = 100) -> list[Export]:
    """The newest exports first."""
    return list(session.scalars(select(Export).order_by(Export.created_at.desc(), Export.id).limit(limit)))


def latest_published(session: Session) -> Export | None:
    """The published export of the latest period (the newest one when a period was published twice)."""
    query = select(Export).where(Export.published.is_(True))
    return session.scalars(query.order_by(Export.period_to.desc(), Export.created_at.desc()).limit(1)).first()


def write(session: Session, keys: HubKeys, row: Export, out: IO[bytes]) -> None:
    """Write an export's bundle again to `out` (a file open for reading and writing); 409 if it no longer has its
    digest."""
    checkpoint = session.get(AuditCheckpoint, row.checkpoint_size)
    if checkpoint is None:
        raise auditlog.AuditLogError(f"audit checkpoint {row.checkpoint_size} is missing")
    start = out.tell()
    draw(
        session, keys, out, export_id=row.id,
        period=bundle.Period(row.period_label, _utc(row.period_from) or row.period_from,
                             _utc(row.period_to) or row.period_to),
        created_at=_utc(row.created_at) or row.created_at, checkpoint=checkpoint, first=row.first_seq,
        end=row.end_seq, keyset_version=row.keyset_version, threshold=row.threshold, envelope=row.envelope,
    )
    out.seek(start)
    digest = hashlib.sha256()
    shutil.copyfileobj(out, _Into(digest))
    if digest.hexdigest() != row.bundle_sha256:
        raise ConflictError(
            "this export can no longer be written byte for byte as it was signed (a key set or checkpoint was "
            "re-signed since): create a new export of the period"
        )
    out.seek(start)


class _Into:
    def __init__(self, digest: Any) -> None:
        self.digest = digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return len(data)


def view(row: Export) -> dict[str, Any]:
    """An export as the API lists it."""
    return {
        "id": row.id,
        "period": {"label": row.period_label, "from": format_time(_utc(row.period_from) or row.period_from),
                   "to": format_time(_utc(row.period_to) or row.period_to)},
        "created_at": format_time(_utc(row.created_at) or row.created_at),
        "checkpoint_size": row.checkpoint_size,
        "entries": {"first": row.first_seq, "end": row.end_seq},
        "threshold": row.threshold,
        "bundle_sha256": row.bundle_sha256,
        "bundle_bytes": row.bundle_bytes,
        "published": row.published,
        "audit_seq": row.audit_seq,
        "aggregates": json.loads(row.aggregates),
    }
