"""Reports: what a partner matched, what it did about it, and the history of that outcome.

A bulk submission is all or nothing: every item is checked (shape, then against the database: a signal
this partner reads, in the named collection, a seq it was served, sane times) and one bad item refuses
the request with a 422 naming it. Each report is idempotent under the partner's own id: the same id with
the same body is a replay (nothing written), with another body a 422.

Every write carries the SHA-256 of the report's canonical JSON (`document`) in its audit entry: one entry
per request listing each new report's id and digest, and one entry per outcome change. With the entry's
inclusion proof and the report document, anyone can check that the hub committed to that report.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, insert, or_, select
from sqlalchemy.orm import Session

from audit.canonical import canonical_json, format_time
from hub.db import durable_before_answering, utcnow
from hub.errors import BadRequestError, NotFoundError, PayloadTooLargeError, ValidationError
from hub.feed.models import Access, CollectionHead, CollectionMember, Signal, SignalSeq
from hub.feed.signals import EXACT_TYPES, HEX_LENGTHS
from hub.reports.models import (
    MAX_REPORT_ID_LENGTH,
    OUTCOMES,
    SURFACES,
    Report,
    ReportOutcome,
    SignalFlag,
)
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor
from hub.transparency.keys import keyed_digest

MAX_REPORTS_PER_REQUEST = 1000
MAX_CONTENT_REF_LENGTH = 512
MAX_SEQ = 2**63 - 1  # the largest batch seq a BIGINT column holds
MAX_PAGE = 1000
DEFAULT_PAGE = 100
# Clocks differ: a time up to this far ahead of the hub's is taken as now, not refused as future.
CLOCK_SKEW = timedelta(seconds=60)
DOCUMENT_TYPE = "hashfed.report.v1"
PENDING = "pending_review"
FALSE_POSITIVE = "false_positive"

_REPORT_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:-]{{0,{MAX_REPORT_ID_LENGTH - 1}}}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_ITEM_KEYS = frozenset(
    {
        "id",
        "signal",
        "collection",
        "seq",
        "distance",
        "outcome",
        "matched_at",
        "actioned_at",
        "automated_detection",
        "automated_decision",
        "surface",
        "content_ref",
    }
)
_REPORTS = cast(Table, Report.__table__)
_OUTCOMES = cast(Table, ReportOutcome.__table__)
_UPDATE_KEYS = frozenset({"outcome", "actioned_at", "automated_decision"})
_LOOKUP_CHUNK = 500
_INSERT_CHUNK = 1000


# --- the report document ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportDocument:
    """A report at one version of its outcome: the canonical JSON whose SHA-256 the audit log holds."""

    partner: str
    id: str
    signal: str
    collection: str
    seq: int
    distance: int
    surface: str
    content_ref: str  # the keyed digest, never the reference itself
    matched_at: datetime
    automated_detection: bool
    version: int
    outcome: str
    actioned_at: datetime | None
    automated_decision: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": DOCUMENT_TYPE,
            "partner": self.partner,
            "id": self.id,
            "signal": self.signal,
            "collection": self.collection,
            "seq": self.seq,
            "distance": self.distance,
            "surface": self.surface,
            "content_ref": self.content_ref,
            "matched_at": format_time(self.matched_at),
            "automated_detection": self.automated_detection,
            "version": self.version,
            "outcome": self.outcome,
            "actioned_at": None if self.actioned_at is None else format_time(self.actioned_at),
            "automated_decision": self.automated_decision,
        }

    def to_bytes(self) -> bytes:
        """RFC 8785 canonical JSON."""
        return canonical_json(self.to_dict())

    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def of(cls, report: Report, outcome: ReportOutcome | None = None) -> ReportDocument:
        """The document of `report` at `outcome`'s version (default: its current one)."""
        current = outcome
        return cls(
            partner=report.partner_id,
            id=report.report_id,
            signal=report.signal_id,
            collection=report.collection_id,
            seq=report.seq,
            distance=report.distance,
            surface=report.surface,
            content_ref=report.content_ref_digest,
            matched_at=report.matched_at,
            automated_detection=report.automated_detection,
            version=current.version if current else report.version,
            outcome=current.outcome if current else report.outcome,
            actioned_at=current.actioned_at if current else report.actioned_at,
            automated_decision=current.automated_decision if current else report.automated_decision,
        )


def content_ref_digest(hub_secret: bytes, partner_id: str, content_ref: str) -> str:
    """The keyed digest of a partner's content reference, separated by partner and by purpose."""
    return keyed_digest(hub_secret, f"report-content-ref\x00{partner_id}\x00{content_ref}")


# --- parsing ---------------------------------------------------------------------------------------------


def _whole_second(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(microsecond=0)


def parse_time(value: Any) -> datetime:
    """An RFC 3339 time with a zone (`Z` or an offset), to whole UTC seconds; ValueError otherwise."""
    if not isinstance(value, str) or not 19 <= len(value) <= 35 or "T" not in value:
        raise ValueError("an RFC 3339 time such as 2026-01-31T12:00:00Z")
    t = datetime.fromisoformat(value)
    if t.tzinfo is None:
        raise ValueError("a time needs a zone (Z or an offset)")
    try:
        return _whole_second(t)
    except OverflowError as e:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC (9999 likewise after)
        raise ValueError("a time within years 1-9999 in UTC") from e


@dataclass(frozen=True)
class Item:
    """A report item checked for shape, not yet against the database."""

    report_id: str
    signal_id: str | None
    signal_type: str | None
    signal_value: str | None
    collection_id: str
    seq: int
    distance: int
    outcome: str
    matched_at: datetime
    actioned_at: datetime | None
    automated_detection: bool
    automated_decision: bool
    surface: str
    content_ref: str


def _times(
    problems: list[str], matched: datetime | None, actioned: datetime | None, outcome: Any, now: datetime
) -> None:
    limit = now + CLOCK_SKEW
    if matched is not None and matched > limit:
        problems.append("matched_at is in the future")
    if actioned is not None and actioned > limit:
        problems.append("actioned_at is in the future")
    if matched is not None and actioned is not None and actioned < matched:
        problems.append("actioned_at is before matched_at")
    if outcome == PENDING and actioned is not None:
        problems.append("a pending_review report has no actioned_at yet")
    if outcome in OUTCOMES and outcome != PENDING and actioned is None:
        problems.append(f"an outcome of {outcome} needs actioned_at")


def _outcome_fields(raw: dict[str, Any], problems: list[str]) -> tuple[Any, datetime | None, Any]:
    outcome = raw.get("outcome")
    if outcome not in OUTCOMES:
        problems.append(f"outcome must be one of {', '.join(OUTCOMES)}")
    actioned: datetime | None = None
    if raw.get("actioned_at") is not None:
        try:
            actioned = parse_time(raw["actioned_at"])
        except ValueError as e:
            problems.append(f"actioned_at: {e}")
    decision = raw.get("automated_decision")
    if type(decision) is not bool:
        problems.append("automated_decision must be true or false")
    return outcome, actioned, decision


def _signal_ref(raw: Any, problems: list[str]) -> tuple[str | None, str | None, str | None]:
    if not isinstance(raw, dict) or not (set(raw) == {"id"} or set(raw) == {"type", "value"}):
        problems.append('signal is {"id": ...} (as the mirror holds it) or {"type": ..., "value": ...}')
        return None, None, None
    if "id" in raw:
        if not isinstance(raw["id"], str) or not 0 < len(raw["id"]) <= 36:
            problems.append("signal.id must be a signal id")
            return None, None, None
        return raw["id"], None, None
    kind, value = raw["type"], raw["value"]
    if not isinstance(kind, str) or kind not in HEX_LENGTHS:
        problems.append(f"signal.type must be one of {', '.join(HEX_LENGTHS)}")
        return None, None, None
    if not isinstance(value, str) or len(value) != HEX_LENGTHS[kind] or not _HEX.fullmatch(value):
        problems.append(f"signal.value must be {HEX_LENGTHS[kind]} hex characters")
        return None, None, None
    return None, str(kind), value.lower()


def _parse_item(raw: Any, now: datetime) -> tuple[Item | None, list[str]]:
    if not isinstance(raw, dict):
        return None, ["a report is an object"]
    problems: list[str] = []
    extra = raw.keys() - _ITEM_KEYS
    if extra:
        problems.append(f"unknown fields: {', '.join(sorted(map(str, extra)))}")
    rid = raw.get("id")
    if not isinstance(rid, str) or not _REPORT_ID.fullmatch(rid):
        problems.append(
            f"id must be 1-{MAX_REPORT_ID_LENGTH} letters, digits and ._:- (starting with a letter or digit)"
        )
    signal_id, signal_type, signal_value = _signal_ref(raw.get("signal"), problems)
    collection = raw.get("collection")
    if not isinstance(collection, str) or not 0 < len(collection) <= 36:
        problems.append("collection must be a collection id")
    seq = raw.get("seq")
    if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
        problems.append("seq must be a positive integer: the batch in which the signal was received")
    distance = raw.get("distance")
    if type(distance) is not int or not 0 <= distance <= 256:
        problems.append("distance must be an integer from 0 to 256")
    elif signal_type in EXACT_TYPES and distance != 0:
        problems.append(f"a {signal_type} match has distance 0")
    outcome, actioned, decision = _outcome_fields(raw, problems)
    matched: datetime | None = None
    try:
        matched = parse_time(raw.get("matched_at"))
    except ValueError as e:
        problems.append(f"matched_at: {e}")
    _times(problems, matched, actioned, outcome, now)
    detection = raw.get("automated_detection")
    if type(detection) is not bool:
        problems.append("automated_detection must be true or false")
    surface = raw.get("surface")
    if surface not in SURFACES:
        problems.append(f"surface must be one of {', '.join(SURFACES)}")
    ref = raw.get("content_ref")
    if not isinstance(ref, str) or not 0 < len(ref) <= MAX_CONTENT_REF_LENGTH:
        problems.append(f"content_ref must be a string of 1-{MAX_CONTENT_REF_LENGTH} characters")
    if problems or matched is None:
        return None, problems
    return (
        Item(
            report_id=str(rid),
            signal_id=signal_id,
            signal_type=signal_type,
            signal_value=signal_value,
            collection_id=str(collection),
            seq=int(seq),  # type: ignore[arg-type]
            distance=int(distance),  # type: ignore[arg-type]
            outcome=str(outcome),
            matched_at=matched,
            actioned_at=actioned,
            automated_detection=bool(detection),
            automated_decision=bool(decision),
            surface=str(surface),
            content_ref=str(ref),
        ),
        [],
    )


def _refuse(errors: dict[int, list[str]], items: Sequence[Any]) -> ValidationError:
    named = []
    for i in sorted(errors)[:5]:
        raw = items[i]
        rid = raw.get("id") if isinstance(raw, dict) else None
        named.append(f"#{i} ({rid})" if isinstance(rid, str) and len(rid) <= 64 else f"#{i}")
    more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
    return ValidationError(
        f"{len(errors)} of {len(items)} reports are refused: {', '.join(named)}{more}; nothing was written",
        errors={"reports": {str(i): problems for i, problems in sorted(errors.items())}},
    )


# --- resolving against the database ----------------------------------------------------------------------


def _chunks(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


@dataclass(frozen=True)
class _SignalRow:
    id: str
    collection_id: str
    type: str
    value: str
    added_seq: int | None


def _readable(session: Session, partner_id: str, collection_ids: set[str]) -> dict[str, int]:
    """{collection id: latest sealed seq} of the named collections this partner may read."""
    ids = sorted(collection_ids)
    readable = set(
        session.scalars(
            select(CollectionMember.collection_id).where(
                CollectionMember.partner_id == partner_id,
                CollectionMember.access == Access.READER.value,
                CollectionMember.collection_id.in_(ids),
            )
        )
    )
    sizes = dict.fromkeys(readable, 0)
    if readable:
        rows = session.execute(
            select(CollectionHead.collection_id, CollectionHead.size).where(
                CollectionHead.collection_id.in_(sorted(readable))
            )
        )
        sizes.update({c: int(n) for c, n in rows})
    return sizes


_SIGNAL_COLUMNS = (Signal.id, Signal.collection_id, Signal.type, Signal.value, SignalSeq.added_seq)


def _signals_by_id(session: Session, ids: Sequence[str]) -> dict[str, _SignalRow]:
    out: dict[str, _SignalRow] = {}
    for chunk in _chunks(sorted(set(ids)), _LOOKUP_CHUNK):
        query = (
            select(*_SIGNAL_COLUMNS)
            .outerjoin(SignalSeq, SignalSeq.signal_id == Signal.id)
            .where(Signal.id.in_(list(chunk)))
        )
        for row in session.execute(query):
            out[row.id] = _SignalRow(*row)
    return out


def _signals_by_value(
    session: Session, wanted: set[tuple[str, str, str]]
) -> dict[tuple[str, str, str], list[_SignalRow]]:
    """Every published signal of each (collection, type, value): a value may come back after a retraction."""
    out: dict[tuple[str, str, str], list[_SignalRow]] = {}
    groups: dict[tuple[str, str], list[str]] = {}
    for c, t, v in wanted:
        groups.setdefault((c, t), []).append(v)
    for (c, t), values in groups.items():
        for chunk in _chunks(sorted(values), _LOOKUP_CHUNK):
            rows = session.execute(
                select(*_SIGNAL_COLUMNS)
                .join(SignalSeq, SignalSeq.signal_id == Signal.id)
                .where(Signal.collection_id == c, Signal.type == t, Signal.value.in_(list(chunk)))
            )
            for row in rows:
                out.setdefault((c, t, row.value), []).append(_SignalRow(*row))
    return out


@dataclass(frozen=True)
class _Existing:
    request_sha256: str
    first_sha256: str
    first_audit_seq: int


def _existing(session: Session, partner_id: str, report_ids: Sequence[str]) -> dict[str, _Existing]:
    """The partner's reports among `report_ids`, with their first version's digest and audit entry.

    Two primary-key lookups rather than one join: the planner would hash-join the whole outcome table.
    """
    found: dict[str, str] = {}
    for chunk in _chunks(sorted(set(report_ids)), _LOOKUP_CHUNK):
        rows = session.execute(
            select(Report.report_id, Report.request_sha256).where(
                Report.partner_id == partner_id, Report.report_id.in_(list(chunk))
            )
        )
        found.update({rid: req for rid, req in rows})
    out: dict[str, _Existing] = {}
    for chunk in _chunks(sorted(found), _LOOKUP_CHUNK):
        firsts = session.execute(
            select(ReportOutcome.report_id, ReportOutcome.report_sha256, ReportOutcome.audit_seq).where(
                ReportOutcome.partner_id == partner_id,
                ReportOutcome.report_id.in_(list(chunk)),
                ReportOutcome.version == 1,
            )
        )
        out.update({rid: _Existing(found[rid], first, int(seq)) for rid, first, seq in firsts})
    return out


UNKNOWN_SIGNAL = "unknown signal: no such published signal in this collection for this partner"


def _resolve(
    item: Item,
    sizes: dict[str, int],
    by_id: dict[str, _SignalRow],
    by_value: dict[tuple[str, str, str], list[_SignalRow]],
) -> tuple[_SignalRow | None, list[str]]:
    """The signal an item names, or why not (the same words for an unknown and an unreadable signal)."""
    if item.collection_id not in sizes:
        return None, ["unknown collection: no such collection readable by this partner"]
    size = sizes[item.collection_id]
    if item.seq > size:
        return None, [f"seq {item.seq} was never served: the collection's latest sealed seq is {size}"]
    if item.signal_id is not None:
        row = by_id.get(item.signal_id)
        if row is None or row.collection_id != item.collection_id or row.added_seq is None:
            return None, [UNKNOWN_SIGNAL]
        candidates = [row]
    else:
        candidates = by_value.get((item.collection_id, str(item.signal_type), str(item.signal_value)), [])
        if not candidates:
            return None, [UNKNOWN_SIGNAL]
    served = [s for s in candidates if s.added_seq is not None and s.added_seq <= item.seq]
    if not served:
        first = min(int(s.added_seq or 0) for s in candidates)
        return None, [f"seq {item.seq} is before the batch that added this signal ({first})"]
    if item.signal_type is not None and item.signal_type != served[0].type:
        return None, [UNKNOWN_SIGNAL]
    signal = max(served, key=lambda s: int(s.added_seq or 0))
    if signal.type in EXACT_TYPES and item.distance != 0:
        # A signal named by id shows its type only here; one named by type and value is checked in _parse_item.
        return None, [f"a {signal.type} match has distance 0"]
    return signal, []


def _request_sha256(partner_id: str, item: Item, signal_id: str, ref_digest: str) -> str:
    """What makes two submissions of one report id the same: every field, the signal resolved to its id."""
    doc = ReportDocument(
        partner_id, item.report_id, signal_id, item.collection_id, item.seq, item.distance, item.surface,
        ref_digest, item.matched_at, item.automated_detection, 1, item.outcome, item.actioned_at,
        item.automated_decision,
    )
    return doc.sha256()


# --- false-positive votes and flags ----------------------------------------------------------------------


def _new_false_positive_votes(session: Session, partner_id: str, signal_ids: set[str]) -> set[str]:
    """The signals this partner has never reported `false_positive` before (read before writing)."""
    if not signal_ids:
        return set()
    seen: set[str] = set()
    for chunk in _chunks(sorted(signal_ids), _LOOKUP_CHUNK):
        seen.update(
            session.scalars(
                select(Report.signal_id)
                .join(
                    ReportOutcome,
                    and_(
                        ReportOutcome.partner_id == Report.partner_id,
                        ReportOutcome.report_id == Report.report_id,
                    ),
                )
                .where(
                    Report.partner_id == partner_id,
                    Report.signal_id.in_(list(chunk)),
                    ReportOutcome.outcome == FALSE_POSITIVE,
                )
                .distinct()
            )
        )
    return signal_ids - seen


def _count_votes(session: Session, signal_ids: set[str], threshold: int, now: datetime) -> list[str]:
    """Add one partner's vote to each signal; flag (and audit) those reaching `threshold`; return them."""
    flagged: list[str] = []
    for signal_id in sorted(signal_ids):
        row = session.get(SignalFlag, signal_id, with_for_update=True)
        if row is None:
            row = SignalFlag(signal_id=signal_id, false_positive_partners=0, updated_at=now)
            session.add(row)
        row.false_positive_partners += 1
        row.updated_at = now
        if row.flagged_at is None and row.false_positive_partners >= threshold:
            rec = auditlog.record(
                session,
                Actor.system("reports"),
                "signal.flag",
                f"signal/{signal_id}",
                {
                    "reason": "false_positive_reports",
                    "partners": row.false_positive_partners,
                    "threshold": threshold,
                },
                now=now,
            )
            row.flagged_at = now
            row.flag_audit_seq = rec.seq
            flagged.append(signal_id)
    session.flush()
    return flagged


def flag_of(session: Session, signal_id: str) -> SignalFlag | None:
    """The review state of a signal: how many partners called it a false positive, and when it was flagged."""
    return session.get(SignalFlag, signal_id)


def flagged_signals(session: Session) -> list[SignalFlag]:
    """Signals flagged for governance review, oldest flag first (the review queue's input)."""
    return list(
        session.scalars(
            select(SignalFlag).where(SignalFlag.flagged_at.is_not(None)).order_by(SignalFlag.flagged_at)
        )
    )


# --- writes ----------------------------------------------------------------------------------------------


@dataclass
class Submitted:
    """What a bulk submission did: per item (in request order) whether it was new, and its first digest."""

    audit_seq: int | None
    reports: list[dict[str, Any]]
    created: int
    replayed: int
    flagged: list[str] = field(default_factory=list)


def submit(
    session: Session,
    *,
    partner_id: str,
    items: Any,
    actor: Actor,
    hub_secret: bytes,
    flag_threshold: int,
    now: datetime | None = None,
) -> Submitted:
    """Record up to 1,000 reports: all or nothing, one audit entry listing each new report's digest."""
    now = _whole_second(now or utcnow())
    if not isinstance(items, list) or not items:
        raise ValidationError("reports must be a non-empty list", errors={"reports": ["a non-empty list"]})
    if len(items) > MAX_REPORTS_PER_REQUEST:
        raise PayloadTooLargeError(f"at most {MAX_REPORTS_PER_REQUEST} reports per request, got {len(items)}")
    parsed: list[Item | None] = []
    errors: dict[int, list[str]] = {}
    for i, raw in enumerate(items):
        item, problems = _parse_item(raw, now)
        parsed.append(item)
        if problems:
            errors[i] = problems
    if errors:
        raise _refuse(errors, items)
    valid = [p for p in parsed if p is not None]

    # Writers queue on the audit log's lock: the idempotency check and the vote count cannot race.
    auditlog.next_seq(session)
    sizes = _readable(session, partner_id, {it.collection_id for it in valid})
    by_id = _signals_by_id(session, [it.signal_id for it in valid if it.signal_id is not None])
    by_value = _signals_by_value(
        session,
        {
            (it.collection_id, str(it.signal_type), str(it.signal_value))
            for it in valid
            if it.signal_id is None and it.collection_id in sizes
        },
    )
    existing = _existing(session, partner_id, [it.report_id for it in valid])

    resolved: list[tuple[Item, str, str, str]] = []  # item, signal id, content ref digest, request digest
    seen: dict[str, str] = {}
    out: list[dict[str, Any] | None] = []
    for i, it in enumerate(valid):
        signal, problems = _resolve(it, sizes, by_id, by_value)
        if signal is None:
            errors[i] = problems
            out.append(None)
            continue
        ref = content_ref_digest(hub_secret, partner_id, it.content_ref)
        digest = _request_sha256(partner_id, it, signal.id, ref)
        earlier = existing.get(it.report_id)
        first = seen.get(it.report_id)
        if (earlier is not None and earlier.request_sha256 != digest) or (
            first is not None and first != digest
        ):
            errors[i] = ["this report id was already used with another body"]
            out.append(None)
        elif earlier is not None:
            out.append(
                {"id": it.report_id, "created": False, "sha256": earlier.first_sha256,
                 "audit_seq": earlier.first_audit_seq}
            )
        elif first is not None:
            out.append({"id": it.report_id, "created": False, "sha256": digest, "audit_seq": None})
        else:
            seen[it.report_id] = digest
            resolved.append((it, signal.id, ref, digest))
            out.append({"id": it.report_id, "created": True, "sha256": digest, "audit_seq": None})
    if errors:
        raise _refuse(errors, items)
    if not resolved:
        durable_before_answering(session)  # every report a replay: their commits may not be on disk yet
        return Submitted(None, [o for o in out if o is not None], 0, len(valid))

    votes = _new_false_positive_votes(
        session, partner_id, {sid for it, sid, _, _ in resolved if it.outcome == FALSE_POSITIVE}
    )
    rec = auditlog.record(
        session,
        actor,
        "reports.submit",
        f"partner/{partner_id}",
        {"count": len(resolved), "reports": [{"id": it.report_id, "sha256": d} for it, _, _, d in resolved]},
        now=now,
    )
    report_rows = [
        {
            "partner_id": partner_id,
            "report_id": it.report_id,
            "signal_id": sid,
            "collection_id": it.collection_id,
            "seq": it.seq,
            "distance": it.distance,
            "surface": it.surface,
            "content_ref_digest": ref,
            "matched_at": it.matched_at,
            "automated_detection": it.automated_detection,
            "request_sha256": digest,
            "received_at": now,
            "outcome": it.outcome,
            "version": 1,
            "actioned_at": it.actioned_at,
            "automated_decision": it.automated_decision,
            "updated_at": now,
        }
        for it, sid, ref, digest in resolved
    ]
    outcome_rows = [
        {
            "partner_id": partner_id,
            "report_id": it.report_id,
            "version": 1,
            "outcome": it.outcome,
            "actioned_at": it.actioned_at,
            "automated_decision": it.automated_decision,
            "recorded_at": now,
            "report_sha256": digest,
            "audit_seq": rec.seq,
        }
        for it, _, _, digest in resolved
    ]
    # Core inserts on the tables, not the ORM bulk path: a third of the request's time otherwise.
    for chunk in _chunks(report_rows, _INSERT_CHUNK):
        session.execute(insert(_REPORTS), list(chunk))
    for chunk in _chunks(outcome_rows, _INSERT_CHUNK):
        session.execute(insert(_OUTCOMES), list(chunk))
    for o in out:
        if o is not None and o["created"]:
            o["audit_seq"] = rec.seq
    flagged = _count_votes(session, votes, flag_threshold, now)
    return Submitted(rec.seq, [o for o in out if o is not None], len(resolved), len(valid) - len(resolved),
                     flagged)


def _own(session: Session, partner_id: str, report_id: str, *, for_update: bool = False) -> Report:
    query = select(Report).where(Report.partner_id == partner_id, Report.report_id == report_id)
    if for_update:
        query = query.with_for_update()
    report = session.scalars(query).first()
    if report is None:
        raise NotFoundError("no such report")
    return report


@dataclass
class Updated:
    """The report after an outcome change; `changed` is False when the change repeated the current outcome."""

    report: Report
    changed: bool
    audit_seq: int | None
    flagged: list[str] = field(default_factory=list)


def update_outcome(
    session: Session,
    *,
    partner_id: str,
    report_id: str,
    body: Any,
    actor: Actor,
    flag_threshold: int,
    now: datetime | None = None,
) -> Updated:
    """Record a new outcome as the next version of the report's history; one audit entry.

    Sending the outcome the report already has (same actioned_at and decision) writes nothing: a retried
    PATCH is harmless.
    """
    now = _whole_second(now or utcnow())
    if not isinstance(body, dict):
        raise ValidationError("the body is an object", errors={"json": ["an object"]})
    problems: list[str] = []
    extra = body.keys() - _UPDATE_KEYS
    if extra:
        problems.append(f"unknown fields: {', '.join(sorted(map(str, extra)))}")
    outcome, actioned, decision = _outcome_fields(body, problems)
    auditlog.next_seq(session)
    report = _own(session, partner_id, report_id, for_update=True)
    _times(problems, report.matched_at, actioned, outcome, now)
    if problems:
        raise ValidationError(f"report {report_id}: {'; '.join(problems)}", errors={"json": problems})
    if (report.outcome, report.actioned_at, report.automated_decision) == (outcome, actioned, decision):
        durable_before_answering(session)  # a retry: the change it repeats may not be on disk yet
        return Updated(report, False, None)
    votes = set()
    if outcome == FALSE_POSITIVE:
        votes = _new_false_positive_votes(session, partner_id, {report.signal_id})
    version = report.version + 1
    row = ReportOutcome(
        partner_id=partner_id,
        report_id=report_id,
        version=version,
        outcome=str(outcome),
        actioned_at=actioned,
        automated_decision=bool(decision),
        recorded_at=now,
        report_sha256="",
        audit_seq=0,
    )
    digest = ReportDocument.of(report, row).sha256()
    rec = auditlog.record(
        session,
        actor,
        "report.outcome",
        f"report/{partner_id}/{report_id}",
        {"report": report_id, "version": version, "outcome": str(outcome), "sha256": digest},
        now=now,
    )
    row.report_sha256 = digest
    row.audit_seq = rec.seq
    session.add(row)
    report.outcome = row.outcome
    report.version = version
    report.actioned_at = actioned
    report.automated_decision = row.automated_decision
    report.updated_at = now
    session.flush()
    flagged = _count_votes(session, votes, flag_threshold, now)
    return Updated(report, True, rec.seq, flagged)


# --- reads -----------------------------------------------------------------------------------------------


def get(session: Session, partner_id: str, report_id: str) -> tuple[Report, list[ReportOutcome]]:
    """One of the partner's reports with its whole outcome history, oldest first; another's is a 404."""
    report = _own(session, partner_id, report_id)
    history = list(
        session.scalars(
            select(ReportOutcome)
            .where(ReportOutcome.partner_id == partner_id, ReportOutcome.report_id == report_id)
            .order_by(ReportOutcome.version)
        )
    )
    return report, history


def encode_cursor(report: Report) -> str:
    raw = json.dumps([format_time(report.received_at), report.report_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        when, rid = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return parse_time(when), str(rid)
    except (ValueError, TypeError) as e:
        raise BadRequestError("cursor is not one this API returned") from e


@dataclass(frozen=True)
class Page:
    """A page of reports in the order the hub received them, and the cursor of the next page (or None)."""

    reports: list[Report]
    next_cursor: str | None


def list_reports(
    session: Session,
    partner_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    outcome: str | None = None,
    collection_id: str | None = None,
    content_ref_digest: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> Page:
    """The partner's own reports, filtered by matched_at (since <= t < until), outcome and collection."""
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequestError(f"limit must be between 1 and {MAX_PAGE}")
    if outcome is not None and outcome not in OUTCOMES:
        raise BadRequestError(f"outcome must be one of {', '.join(OUTCOMES)}")
    query = select(Report).where(Report.partner_id == partner_id)
    if since is not None:
        query = query.where(Report.matched_at >= since)
    if until is not None:
        query = query.where(Report.matched_at < until)
    if outcome is not None:
        query = query.where(Report.outcome == outcome)
    if collection_id is not None:
        query = query.where(Report.collection_id == collection_id)
    if content_ref_digest is not None:
        query = query.where(Report.content_ref_digest == content_ref_digest)
    if cursor:
        after, rid = _decode_cursor(cursor)
        query = query.where(
            or_(Report.received_at > after, and_(Report.received_at == after, Report.report_id > rid))
        )
    rows = list(session.scalars(query.order_by(Report.received_at, Report.report_id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1]) if more and rows else None)

