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
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, insert, or_, select
from sqlalchemy.orm import Session

from audit.canonical import canonical_json, format_time
from hub.db import durable_before_answering, utcnow
from hub.errors import BadRequestError, NotFoundError, PayloadTooLargeError, ValidationError
from hub.feed.models import Access, CollectionHead, CollectionMember, Signal, SignalSeq
from hub.feed.signals import EXACT_TYPES, HEX_LENGTHS, VPDQ, parse_vpdq_value
from hub.reports.fields import (
    ITEM_KEYS,
    MATCH,
    OUTCOME,
    OUTCOME_KEYS,
    PENDING,
    SUBMITTED,
    Field,
    parse_time,
    whole_second,
)
from hub.reports.models import OUTCOMES, FalsePositiveVote, Report, ReportOutcome, SignalFlag
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor
from hub.transparency.keys import keyed_digest

MAX_REPORTS_PER_REQUEST = 1000
MAX_PAGE = 1000
DEFAULT_PAGE = 100
# Clocks differ: a time up to this far ahead of the hub's is taken as now, not refused as future.
CLOCK_SKEW = timedelta(seconds=60)
DOCUMENT_TYPE = "hashfed.report.v1"
FALSE_POSITIVE = "false_positive"

_HEX = re.compile(r"[0-9a-fA-F]+")
_REPORTS = cast(Table, Report.__table__)
_OUTCOMES = cast(Table, ReportOutcome.__table__)
_LOOKUP_CHUNK = 500
_INSERT_CHUNK = 1000


# --- the report document ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportDocument:
    """A report at one version of its outcome: the canonical JSON whose SHA-256 the audit log holds.

    A signed format, so its keys are listed here rather than taken from `fields`: a new API field must not
    change the bytes of documents already committed to. `of` fills it from the fields' columns.
    """

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
        out: dict[str, Any] = {"type": DOCUMENT_TYPE}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = format_time(value) if isinstance(value, datetime) else value
        return out

    def to_bytes(self) -> bytes:
        """RFC 8785 canonical JSON."""
        return canonical_json(self.to_dict())

    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def of(cls, report: Report, outcome: ReportOutcome | None = None) -> ReportDocument:
        """The document of `report` at `outcome`'s version (default: its current one)."""
        current = report if outcome is None else outcome
        return cls(
            partner=report.partner_id,
            signal=report.signal_id,
            content_ref=report.content_ref_digest,
            version=current.version,
            **{f.name: getattr(report, f.column) for f in MATCH},
            **{f.name: getattr(current, f.column) for f in OUTCOME},
        )


def content_ref_digest(hub_secret: bytes, partner_id: str, content_ref: str) -> str:
    """The keyed digest of a partner's content reference, separated by partner and by purpose."""
    return keyed_digest(hub_secret, f"report-content-ref\x00{partner_id}\x00{content_ref}")


# --- parsing ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """A report item checked for shape, not yet against the database."""

    values: dict[str, Any]  # each field of `fields.SUBMITTED` by name, parsed (times as UTC datetimes)
    signal_id: str | None
    signal_type: str | None
    signal_value: str | None


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


def _check(raw: dict[str, Any], checked: Iterable[Field], problems: list[str]) -> dict[str, Any]:
    """Each field of `checked` in `raw`, parsed (None where it is bad: `problems` says why)."""
    values: dict[str, Any] = {}
    for f in checked:
        values[f.name], problem = f.check(raw.get(f.name))
        if problem is not None:
            problems.append(problem)
    return values


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
    if kind == VPDQ:  # a video's frames in any accepted form: its signal is stored under their digest
        try:
            digest, _ = parse_vpdq_value(value)
        except ValueError as e:
            problems.append(f"signal.value: {e}")
            return None, None, None
        return None, VPDQ, digest
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
    extra = raw.keys() - ITEM_KEYS
    if extra:
        problems.append(f"unknown fields: {', '.join(sorted(map(str, extra)))}")
    values = _check(raw, SUBMITTED, problems)
    signal_id, signal_type, signal_value = _signal_ref(raw.get("signal"), problems)
    if signal_type in EXACT_TYPES and values["distance"] not in (None, 0):
        problems.append(f"a {signal_type} match has distance 0")
    _times(problems, values["matched_at"], values["actioned_at"], values["outcome"], now)
    if problems:
        return None, problems
    return Item(values, signal_id, signal_type, signal_value), []


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
    collection, seq = item.values["collection"], item.values["seq"]
    if collection not in sizes:
        return None, ["unknown collection: no such collection readable by this partner"]
    size = sizes[collection]
    if seq > size:
        return None, [f"seq {seq} was never served: the collection's latest sealed seq is {size}"]
    if item.signal_id is not None:
        row = by_id.get(item.signal_id)
        if row is None or row.collection_id != collection or row.added_seq is None:
            return None, [UNKNOWN_SIGNAL]
        candidates = [row]
    else:
        candidates = by_value.get((collection, str(item.signal_type), str(item.signal_value)), [])
        if not candidates:
            return None, [UNKNOWN_SIGNAL]
    served = [s for s in candidates if s.added_seq is not None and s.added_seq <= seq]
    if not served:
        first = min(int(s.added_seq or 0) for s in candidates)
        return None, [f"seq {seq} is before the batch that added this signal ({first})"]
    if item.signal_type is not None and item.signal_type != served[0].type:
        return None, [UNKNOWN_SIGNAL]
    signal = max(served, key=lambda s: int(s.added_seq or 0))
    if signal.type in EXACT_TYPES and item.values["distance"] != 0:
        # A signal named by id shows its type only here; one named by type and value is checked in _parse_item.
        return None, [f"a {signal.type} match has distance 0"]
    return signal, []


def _request_sha256(partner_id: str, item: Item, signal_id: str, ref_digest: str) -> str:
    """What makes two submissions of one report id the same: every field, the signal resolved to its id."""
    fixed = {f.name: item.values[f.name] for f in (*MATCH, *OUTCOME)}
    return ReportDocument(partner=partner_id, signal=signal_id, content_ref=ref_digest, version=1, **fixed).sha256()


# --- false-positive votes and flags ----------------------------------------------------------------------


def _new_false_positive_votes(session: Session, partner_id: str, signal_ids: set[str]) -> set[str]:
    """The signals this partner has never voted a false positive on before: no `false_positive` report and no
    vote cast beside another outcome (read before writing)."""
    if not signal_ids:
        return set()
    seen: set[str] = set()
    for chunk in _chunks(sorted(signal_ids), _LOOKUP_CHUNK):
        seen.update(
            session.scalars(
                select(FalsePositiveVote.signal_id).where(
                    FalsePositiveVote.partner_id == partner_id, FalsePositiveVote.signal_id.in_(list(chunk))
                )
            )
        )
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
    false_positive_votes: frozenset[str] = frozenset(),
) -> Submitted:
    """Record up to 1,000 reports: all or nothing, one audit entry listing each new report's digest.

    `false_positive_votes` names reports (by the partner's id) that also cast the partner's false-positive vote
    on their signal whatever their outcome (the facade's `NotBlocked`: a `no_action` report and a vote). Such a
    vote counts as a `false_positive` report's does, once per partner and signal, and the audit entry lists it.
    """
    now = whole_second(now or utcnow())
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
    sizes = _readable(session, partner_id, {it.values["collection"] for it in valid})
    by_id = _signals_by_id(session, [it.signal_id for it in valid if it.signal_id is not None])
    by_value = _signals_by_value(
        session,
        {
            (it.values["collection"], str(it.signal_type), str(it.signal_value))
            for it in valid
            if it.signal_id is None and it.values["collection"] in sizes
        },
    )
    existing = _existing(session, partner_id, [it.values["id"] for it in valid])

    resolved: list[tuple[Item, str, str, str]] = []  # item, signal id, content ref digest, request digest
    seen: dict[str, str] = {}
    out: list[dict[str, Any] | None] = []
    for i, it in enumerate(valid):
        signal, problems = _resolve(it, sizes, by_id, by_value)
        if signal is None:
            errors[i] = problems
            out.append(None)
            continue
        ref = content_ref_digest(hub_secret, partner_id, it.values["content_ref"])
        digest = _request_sha256(partner_id, it, signal.id, ref)
        earlier = existing.get(it.values["id"])
        first = seen.get(it.values["id"])
        if (earlier is not None and earlier.request_sha256 != digest) or (
            first is not None and first != digest
        ):
            errors[i] = ["this report id was already used with another body"]
            out.append(None)
        elif earlier is not None:
            out.append(
                {"id": it.values["id"], "created": False, "sha256": earlier.first_sha256,
                 "audit_seq": earlier.first_audit_seq}
            )
        elif first is not None:
            out.append({"id": it.values["id"], "created": False, "sha256": digest, "audit_seq": None})
        else:
            seen[it.values["id"]] = digest
            resolved.append((it, signal.id, ref, digest))
            out.append({"id": it.values["id"], "created": True, "sha256": digest, "audit_seq": None})
    if errors:
        raise _refuse(errors, items)
    if not resolved:
        durable_before_answering(session)  # every report a replay: their commits may not be on disk yet
        return Submitted(None, [o for o in out if o is not None], 0, len(valid))

    voting = {
        sid: it.values["id"]
        for it, sid, _, _ in resolved
        if it.values["outcome"] != FALSE_POSITIVE and it.values["id"] in false_positive_votes
    }
    votes = _new_false_positive_votes(
        session,
        partner_id,
        {sid for it, sid, _, _ in resolved if it.values["outcome"] == FALSE_POSITIVE} | set(voting),
    )
    details: dict[str, Any] = {
        "count": len(resolved),
        "reports": [{"id": it.values["id"], "sha256": d} for it, _, _, d in resolved],
    }
    cast = sorted((voting[sid], sid) for sid in votes if sid in voting)
    if cast:
        details["false_positive_votes"] = [{"report": rid, "signal": sid} for rid, sid in cast]
    rec = auditlog.record(session, actor, "reports.submit", f"partner/{partner_id}", details, now=now)
    for rid, sid in cast:
        session.add(
            FalsePositiveVote(partner_id=partner_id, signal_id=sid, report_id=rid, audit_seq=rec.seq, recorded_at=now)
        )
    report_rows = [
        {
            "partner_id": partner_id,
            "signal_id": sid,
            "content_ref_digest": ref,
            "request_sha256": digest,
            "received_at": now,
            "version": 1,
            "updated_at": now,
            **{f.column: it.values[f.name] for f in (*MATCH, *OUTCOME)},
        }
        for it, sid, ref, digest in resolved
    ]
    outcome_rows = [
        {
            "partner_id": partner_id,
            "report_id": it.values["id"],
            "version": 1,
            "recorded_at": now,
            "report_sha256": digest,
            "audit_seq": rec.seq,
            **{f.column: it.values[f.name] for f in OUTCOME},
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
    now = whole_second(now or utcnow())
    if not isinstance(body, dict):
        raise ValidationError("the body is an object", errors={"json": ["an object"]})
    problems: list[str] = []
    extra = body.keys() - OUTCOME_KEYS
    if extra:
        problems.append(f"unknown fields: {', '.join(sorted(map(str, extra)))}")
    new = _check(body, OUTCOME, problems)
    outcome, actioned, decision = new["outcome"], new["actioned_at"], new["automated_decision"]
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

