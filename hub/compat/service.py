"""The StopNCII-compatible facade's services: API keys, and the three calls a StopNCII client makes.

FetchHashes serves the sealed feed, not the signals table: each record is one entry of a signed batch of a
collection the partner reads, so the facade says exactly what the signed feed says, and nothing that is
still pending. Batches are ordered by the audit seq of their seal. Every seal takes the audit log's lock
first (hub/feed/batches.py) and holds it until its commit, so a seal with a lower audit seq is visible
before any seal with a higher one, and audit entry times never go backwards (auditlog.record). The
watermark (`startTimestamp`, `nextSetTimestamp`) is that time in whole seconds: a client that resumes from
second T sees every batch sealed at T or later, and a batch not yet visible when it read will be sealed at
T or later too. A resumed client may see the records of second T again; StopNCII records replace earlier
ones of the same hash, so that is harmless. Within one fetch, `nextPageToken` names the exact position
(audit seq of a batch, index of an entry in it): batches are immutable, so pages never shift.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.canonical import parse_json
from hub.compat.models import ApiKey
from hub.db import utcnow
from hub.errors import BadRequestError, ConflictError, HubError, NotFoundError, ValidationError
from hub.feed import collections, signals
from hub.feed.models import Access, Batch, CollectionMember, Signal, SignalSeq
from hub.identity.models import KIND_SCOPES, Partner, PartnerKind, PartnerStatus, new_id
from hub.identity.tenants import get_partner
from hub.reports import service as reports
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor
from hub.transparency.models import AuditEntry

# The scopes a facade key may hold: one per call (FetchHashes, SubmitHashes, SubmitFeedback).
FETCH_SCOPE = "feed:read"
SUBMIT_SCOPE = "hashes:write"
FEEDBACK_SCOPE = "reports:write"
KEY_SCOPES = (FETCH_SCOPE, SUBMIT_SCOPE, FEEDBACK_SCOPE)

KEY_PREFIX = "hfk_"
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 800  # the StopNCII client's default
MAX_FEEDBACKS = 1000  # the reports service's bulk limit
MAX_TIMESTAMP = 2**53  # beyond any time; keeps the value an exact JSON number

# StopNCII's signal types (threatexchange `StopNCIISignalType`) for the hub's: a video's MD5 is the hub's
# `video_md5`. StopNCII has no image MD5 or SHA-256: the hub's `md5` and `sha256` have no StopNCII name and are
# not served.
TYPE_NAMES = {"pdq": "ImagePDQ", "video_md5": "VideoMD5"}
TYPES_BY_NAME = {name: kind for kind, name in TYPE_NAMES.items()}
# Why a signal left the feed -> the StopNCII status a client deletes on. A contributor's retraction or a case's
# withdrawal is "Withdrawn"; staff retiring or quarantining a hash is "Deleted".
WITHDRAWN_REASONS = frozenset({"withdrawn", "retracted"})

_TOKEN = re.compile(r"^([0-9]{1,18})\.([0-9]{1,9})$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_FEEDBACK_OUTCOMES = {
    "Blocked": "blocked",
    # "Reviewed, not blocked": a `no_action` report that also casts the partner's false-positive vote
    # (`_VOTES`), counted by hub/reports/service.py as a `false_positive` report's is, once per partner and signal.
    "NotBlocked": "no_action",
    "PendingReview": "pending_review",
}
_VOTES = frozenset({"NotBlocked"})


class UnauthorizedError(HubError):
    """No valid API key: the same answer whatever was wrong, so a caller learns nothing."""

    status = 401
    default_message = "a valid API key is required"


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    secret: str


@dataclass(frozen=True)
class Caller:
    """The partner behind a presented key, and what it may do."""

    partner_id: str
    key_id: str
    scopes: frozenset[str]
    collection_id: str | None

    def actor(self) -> Actor:
        return Actor(type="partner", partner=self.partner_id, client=f"apikey:{self.key_id}")


# --- keys ------------------------------------------------------------------------------------------------


def key_digest(hub_secret: bytes, key: str) -> str:
    """Keyed digest of an API key (as `tenants.secret_digest` for client secrets), under its own label."""
    return hmac.new(hub_secret, b"hashfed/compat-api-key/v1\x00" + key.encode(), hashlib.sha256).hexdigest()


def create_key(
    session: Session,
    partner_id: str,
    *,
    scopes: list[str] | None,
    collection: str | None,
    hub_secret: bytes,
    actor: Actor,
    now: datetime | None = None,
) -> IssuedKey:
    """A new API key for `partner_id`; the plaintext is returned once and only its digest is kept."""
    partner = get_partner(session, partner_id)
    allowed = KIND_SCOPES[PartnerKind(partner.kind)] & set(KEY_SCOPES)
    chosen = set(scopes) if scopes else set(allowed)
    unknown = sorted(chosen - set(KEY_SCOPES))
    if unknown:
        raise ValidationError(f"a facade key holds only {', '.join(KEY_SCOPES)}; not {', '.join(unknown)}")
    refused = sorted(chosen - allowed)
    if refused:
        raise ValidationError(f"a {partner.kind} partner may not hold: {', '.join(refused)}")
    if not chosen:
        raise ValidationError("a key needs at least one scope")
    collection_id = None
    if collection is not None:
        collection_id = collections.contributable(session, collections.get(session, collection).id, partner.id).id
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id=new_id(),
        partner_id=partner.id,
        digest=key_digest(hub_secret, secret),
        scopes=" ".join(sorted(chosen)),
        collection_id=collection_id,
        created_at=now or utcnow(),
    )
    session.add(row)
    session.flush()
    auditlog.record(
        session, actor, "compat.key.create", f"partner/{partner.id}",
        {"key": row.id, "scopes": sorted(chosen), "collection": collection_id},
    )
    return IssuedKey(row, secret)


def revoke_key(session: Session, key_id: str, *, actor: Actor, now: datetime | None = None) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFoundError(f"no API key {key_id!r}")
    if row.revoked_at is not None:
        raise ConflictError(f"API key {key_id!r} is already revoked")
    row.revoked_at = now or utcnow()
    session.flush()
    auditlog.record(session, actor, "compat.key.revoke", f"partner/{row.partner_id}", {"key": row.id})
    return row


def list_keys(session: Session, partner_id: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if partner_id is not None:
        query = query.where(ApiKey.partner_id == get_partner(session, partner_id).id)
    return list(session.scalars(query))


def authenticate(session: Session, hub_secret: bytes, presented: list[str]) -> Caller:
    """The caller behind the presented keys (the client sends two headers); 401 unless one key is valid.

    The caller's session must act as SYSTEM (the partner is not known yet). Several valid keys must be of one
    partner; a revoked key, a suspended partner and an unknown key get the same answer.
    """
    found: list[ApiKey] = []
    for value in dict.fromkeys(v.strip() for v in presented if v and v.strip()):
        if len(value) > 200:
            continue
        row = session.scalars(select(ApiKey).where(ApiKey.digest == key_digest(hub_secret, value))).first()
        if row is not None:
            found.append(row)
    live = [k for k in found if k.revoked_at is None]
    if not live or len(live) != len(found) or len({k.partner_id for k in live}) != 1:
        raise UnauthorizedError()
    key = live[0]
    partner = session.get(Partner, key.partner_id)
    if partner is None or partner.status != PartnerStatus.ACTIVE.value:
        raise UnauthorizedError()
    scopes = frozenset().union(*(k.scope_set for k in live))
    return Caller(partner.id, key.id, scopes, key.collection_id)


# --- FetchHashes -----------------------------------------------------------------------------------------


def _int_param(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.lstrip("-").isdigit() or len(raw) > 20:
        raise BadRequestError(f"{name} must be an integer", errors={name: ["an integer"]})
    value = int(raw)
    if not low <= value <= high:
        raise BadRequestError(f"{name} must be from {low} to {high}", errors={name: [f"{low}-{high}"]})
    return value


def _readable_ids(session: Session, partner_id: str) -> list[str]:
    return sorted(
        session.scalars(
            select(CollectionMember.collection_id).where(
                CollectionMember.partner_id == partner_id, CollectionMember.access == Access.READER.value
            )
        )
    )


def _record(kind: str, value: str, status: str, when: int) -> dict[str, Any]:
    # No case reference leaves the hub: `caseNumbers` is always empty; nor does other partners' feedback.
    return {
        "lastModtimestamp": when,
        "signalType": TYPE_NAMES[kind],
        "hashValue": value,
        "hashStatus": status,
        "caseNumbers": {},
        "CSPFeedbacks": [],
    }


def fetch(
    session: Session,
    caller: Caller,
    *,
    start_timestamp: str | None,
    page_size: str | None,
    page_token: str | None,
) -> dict[str, Any]:
    """One FetchHashes page: the batch entries of the partner's readable collections from the watermark on."""
    start = _int_param(start_timestamp, "startTimestamp", 0, 0, MAX_TIMESTAMP)
    size = _int_param(page_size, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    after_seq, after_index = -1, -1
    if page_token:
        m = _TOKEN.match(page_token)
        if m is None:
            raise BadRequestError("nextPageToken is not one this hub gave", errors={"nextPageToken": ["invalid"]})
        after_seq, after_index = int(m.group(1)), int(m.group(2))
    since = datetime.fromtimestamp(min(start, 253402300799), UTC)
    readable = _readable_ids(session, caller.partner_id)
    records: list[dict[str, Any]] = []
    removes: list[tuple[int, str, str, int]] = []  # record index, signal id, reason, time
    position: tuple[int, int] | None = None
    watermark = start
    more = False
    if readable:
        # Batch metadata only; each payload is read when the page reaches it.
        rows = session.execute(
            select(Batch.collection_id, Batch.seq, Batch.audit_seq, Batch.adds + Batch.removes, AuditEntry.recorded_at)
            .join(AuditEntry, AuditEntry.seq == Batch.audit_seq)
            .where(
                Batch.collection_id.in_(readable),
                AuditEntry.recorded_at >= since,
                Batch.audit_seq >= after_seq,
            )
            .order_by(Batch.audit_seq)
        ).all()
        for collection_id, seq, audit_seq, count, recorded_at in rows:
            first = after_index + 1 if audit_seq == after_seq else 0
            if first >= count:  # the page token is at this batch's end
                continue
            if len(records) >= size:
                more = True
                break
            when = int(recorded_at.timestamp())
            raw = session.scalar(select(Batch.payload).where(Batch.collection_id == collection_id, Batch.seq == seq))
            payload = parse_json(bytes(raw or b"{}"))
            entries = [("add", e) for e in payload["adds"]] + [("remove", e) for e in payload["removes"]]
            for index in range(first, len(entries)):
                if len(records) >= size:
                    more = True
                    break
                op, entry = entries[index]
                position = (audit_seq, index)
                watermark = max(watermark, when)
                if op == "add":
                    if entry["type"] in TYPE_NAMES:
                        records.append(_record(entry["type"], entry["value"], "Active", when))
                else:
                    removes.append((len(records), entry["id"], entry["reason"], when))
                    records.append({})
            if more:
                break
    _fill_removes(session, records, removes)
    records = [r for r in records if r]
    return {
        "count": len(records),
        "nextPageToken": f"{position[0]}.{position[1]}" if more and position is not None else None,
        "nextSetTimestamp": watermark,
        "hasMoreRecords": more,
        "hashRecords": records,
    }


def _fill_removes(session: Session, records: list[dict[str, Any]], removes: list[tuple[int, str, str, int]]) -> None:
    """Fill in the removed signals' records: a remove entry names the signal, not its hash."""
    if not removes:
        return
    ids = sorted({sid for _, sid, _, _ in removes})
    known = {sid: (kind, value) for sid, kind, value in session.execute(
        select(Signal.id, Signal.type, Signal.value).where(Signal.id.in_(ids))
    )}
    for index, sid, reason, when in removes:
        kind, value = known.get(sid, (None, None))
        if kind in TYPE_NAMES and value is not None:
            status = "Withdrawn" if reason in WITHDRAWN_REASONS else "Deleted"
            records[index] = _record(kind, value, status, when)


# --- SubmitHashes ----------------------------------------------------------------------------------------


def _type_of(raw: Any) -> str | None:
    """The hub type of a StopNCII signal type; the client sends `str()` of its enum (`StopNCIISignalType.X`)."""
    if not isinstance(raw, str):
        return None
    return TYPES_BY_NAME.get(raw.removeprefix("StopNCIISignalType."))


def _target(session: Session, caller: Caller) -> str:
    if caller.collection_id is not None:
        return caller.collection_id
    ids = sorted(
        session.scalars(
            select(CollectionMember.collection_id).where(
                CollectionMember.partner_id == caller.partner_id,
                CollectionMember.access == Access.CONTRIBUTOR.value,
            )
        )
    )
    if len(ids) != 1:
        raise ConflictError(
            "this key names no collection and its partner may contribute to "
            + ("none" if not ids else "several: create a key with --collection")
        )
    return ids[0]


def submit_hashes(
    session: Session, caller: Caller, body: Any, *, hub_secret: bytes, now: datetime | None = None
) -> dict[str, Any]:
    """SubmitHashes: the records become signals of the key's collection (all or nothing, one audit entry)."""
    if not isinstance(body, dict) or not isinstance(body.get("hashRecords"), list) or not body["hashRecords"]:
        raise ValidationError("hashRecords must be a non-empty list", errors={"hashRecords": ["a non-empty list"]})
    items: list[dict[str, Any]] = []
    errors: dict[str, list[str]] = {}
    for i, record in enumerate(body["hashRecords"]):
        kind = _type_of(record.get("signalType")) if isinstance(record, dict) else None
        value = record.get("hashValue") if isinstance(record, dict) else None
        if kind is None:
            errors[str(i)] = [f"signalType must be one of {', '.join(TYPES_BY_NAME)}"]
        elif not isinstance(value, str):
            errors[str(i)] = ["hashValue must be a string of hex digits"]
        else:
            items.append({"type": kind, "value": value.lower()})
    if errors:
        raise ValidationError(f"{len(errors)} hash records are invalid", errors={"hashRecords": errors})
    signals.submit(
        session,
        collection_id=_target(session, caller),
        partner_id=caller.partner_id,
        items=items,
        actor=caller.actor(),
        hub_secret=hub_secret,
        now=now,
    )
    return {"count": len(items)}


# --- SubmitFeedback --------------------------------------------------------------------------------------


def _published(session: Session, partner_id: str, values: set[str]) -> dict[str, tuple[str, str, int]]:
    """{value: (collection id, signal id, seq of its add)} for published, active signals the partner reads."""
    readable = _readable_ids(session, partner_id)
    out: dict[str, tuple[str, str, int]] = {}
    if not readable or not values:
        return out
    rows = session.execute(
        select(Signal.value, Signal.collection_id, Signal.id, SignalSeq.added_seq)
        .join(SignalSeq, SignalSeq.signal_id == Signal.id)
        .where(
            Signal.value.in_(sorted(values)),
            Signal.collection_id.in_(readable),
            Signal.type.in_(sorted(TYPE_NAMES)),
            Signal.status == "active",
            SignalSeq.removed_seq.is_(None),
        )
        .order_by(Signal.collection_id, Signal.id)
    )
    for value, collection_id, signal_id, added_seq in rows:
        out.setdefault(value, (collection_id, signal_id, int(added_seq)))
    return out


def submit_feedback(
    session: Session,
    caller: Caller,
    body: Any,
    *,
    hub_secret: bytes,
    flag_threshold: int,
    now: datetime | None = None,
) -> dict[str, Any]:
    """SubmitFeedback: each feedback becomes a report through the reports service (audited as reports are)."""
    now = (now or utcnow()).astimezone(UTC).replace(microsecond=0)
    if not isinstance(body, dict) or not isinstance(body.get("hashFeedbacks"), list) or not body["hashFeedbacks"]:
        raise ValidationError(
            "hashFeedbacks must be a non-empty list", errors={"hashFeedbacks": ["a non-empty list"]}
        )
    feedbacks = body["hashFeedbacks"]
    if len(feedbacks) > MAX_FEEDBACKS:
        raise ValidationError(f"at most {MAX_FEEDBACKS} feedbacks per request")
    errors: dict[str, list[str]] = {}
    parsed: list[tuple[str, str]] = []
    voting: set[int] = set()
    for i, fb in enumerate(feedbacks):
        value = fb.get("hashValue") if isinstance(fb, dict) else None
        named = fb.get("feedbackValue") if isinstance(fb, dict) else None
        outcome = _FEEDBACK_OUTCOMES.get(named) if isinstance(named, str) else None
        if not isinstance(value, str) or not 0 < len(value) <= 64 or not _HEX.match(value):
            errors[str(i)] = ["hashValue must be a hash in hex"]
        elif outcome is None:
            errors[str(i)] = [f"feedbackValue must be one of {', '.join(_FEEDBACK_OUTCOMES)}"]
        else:
            if named in _VOTES:
                voting.add(len(parsed))
            parsed.append((value.lower(), outcome))
    if errors:
        raise ValidationError(f"{len(errors)} feedbacks are invalid", errors={"hashFeedbacks": errors})
    found = _published(session, caller.partner_id, {v for v, _ in parsed})
    unknown = {str(i): ["unknown hash: no published hash readable by this partner"]
               for i, (v, _) in enumerate(parsed) if v not in found}
    if unknown:
        raise ValidationError(f"{len(unknown)} feedbacks name unknown hashes", errors={"hashFeedbacks": unknown})
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    items = []
    votes: set[str] = set()
    for i, (value, outcome) in enumerate(parsed):
        collection_id, signal_id, added_seq = found[value]
        # A report id of the partner's own: the facade's feedback has none, so it is made from the call.
        report_id = f"stopncii.{stamp}.{i}.{secrets.token_hex(4)}"
        if i in voting:
            votes.add(report_id)
        items.append(
            {
                "id": report_id,
                "collection": collection_id,
                "seq": added_seq,
                "signal": {"id": signal_id},
                "distance": 0,
                "surface": "existing_content",
                "matched_at": now.isoformat().replace("+00:00", "Z"),
                "automated_detection": False,
                "outcome": outcome,
                "actioned_at": None if outcome == "pending_review" else now.isoformat().replace("+00:00", "Z"),
                "automated_decision": False,
                "content_ref": f"stopncii-feedback:{signal_id}",
            }
        )
    submitted = reports.submit(
        session,
        partner_id=caller.partner_id,
        items=items,
        actor=caller.actor(),
        hub_secret=hub_secret,
        flag_threshold=flag_threshold,
        now=now,
        false_positive_votes=frozenset(votes),
    )
    return {"count": submitted.created}
