"""Disputes and staff decisions.

A partner that reads a signal's collection disputes it (idempotent under its own id); the false-positive flag
of hub/reports opens one by itself (`open_flag_disputes`, a scheduled job). The contributor sees disputes on
its signals and may answer once. Staff (scope `governance`) work through the queue: assign, then decide:

- `uphold`: the hash is retired everywhere (removed from every collection through the feed, deny-listed).
  With the four-eyes rule on, an uphold is only proposed until a second staff member confirms it.
- `reject`: the signal stays.
- `quarantine`: the signal is withheld from the feed (a signed remove, reason `quarantined`) until a
  `release` publishes it again (under a new signal id: a feed id is never added twice) or an uphold retires it.

Every step is one audit entry naming the staff user and one append-only `decisions` row; the reason itself
stays in the row, the audit entry binds it by its SHA-256 (free text has no place in a public log). Partner
suspensions and collection membership changes are decisions too.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit.canonical import canonical_json
from hub import rls
from hub.db import utcnow
from hub.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from hub.feed import collections, signals
from hub.feed.models import (
    MAX_CASE_REF_LENGTH,
    Access,
    CollectionMember,
    FeedAck,
    Signal,
    SignalClaim,
    SignalSeq,
    SignalStatus,
)
from hub.governance.models import (
    FINAL,
    MAX_ANSWER,
    MAX_DISPUTE_KEY,
    MAX_NOTE,
    MAX_REASON_TEXT,
    Action,
    Decision,
    Dispute,
    DisputeReason,
    DisputeStatus,
)
from hub.identity import tenants
from hub.identity.models import PartnerStatus
from hub.identity.people import get_user
from hub.reports.models import Report, SignalFlag
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor
from hub.webhooks import service as webhooks

# Statuses a dispute waits in for staff.
QUEUE_STATUSES = (DisputeStatus.OPEN, DisputeStatus.AWAITING_CONFIRMATION, DisputeStatus.QUARANTINED)
# What each action may follow.
_FROM: dict[Action, frozenset[DisputeStatus]] = {
    Action.UPHOLD: frozenset({DisputeStatus.OPEN, DisputeStatus.QUARANTINED}),
    Action.REJECT: frozenset({DisputeStatus.OPEN, DisputeStatus.AWAITING_CONFIRMATION}),
    Action.QUARANTINE: frozenset({DisputeStatus.OPEN}),
    Action.RELEASE: frozenset({DisputeStatus.QUARANTINED}),
}
DECIDE_ACTIONS = tuple(a.value for a in _FROM)


@dataclass(frozen=True)
class Staff:
    """Who decides: a staff user of a governance partner, or the operator's CLI (`user_id` None)."""

    actor: Actor
    user_id: str | None
    partner_id: str | None

    @property
    def name(self) -> str:
        return self.user_id or "operator"

    @classmethod
    def operator(cls) -> Staff:
        return cls(Actor.operator(), None, None)


@dataclass(frozen=True)
class QueueRow:
    dispute: Dispute
    age: timedelta
    signal_type: str
    prefix: str  # the first 8 hex digits of the hash: enough to tell signals apart, not to use one
    collection_slug: str


@dataclass(frozen=True)
class HistoryEvent:
    at: datetime
    kind: str  # added | report | flag | dispute | decision | removed
    summary: str
    audit_seq: int | None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _text(value: Any, name: str, limit: int, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ValidationError(f"invalid {name}", errors={name: [f"a string of 1-{limit} characters"]})
    return value.strip()


def _choice(value: Any, name: str, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(f"invalid {name}", errors={name: [f"one of {', '.join(allowed)}"]})
    return value


# --- partners: open, list, read, answer --------------------------------------------------------------------


def _readable_signal(session: Session, signal_id: str, partner_id: str) -> Signal:
    """The signal if the partner reads its collection; the same 404 as an unknown signal otherwise."""
    signal = session.get(Signal, signal_id) if isinstance(signal_id, str) and len(signal_id) <= 36 else None
    if signal is None:
        raise NotFoundError("no such signal")
    try:
        collections.readable(session, signal.collection_id, partner_id)
    except NotFoundError:
        raise NotFoundError("no such signal") from None
    return signal


def open_dispute(
    session: Session,
    *,
    partner_id: str,
    body: dict[str, Any],
    actor: Actor,
    now: datetime | None = None,
) -> tuple[Dispute, bool]:
    """Contest a signal; returns the dispute and whether it is new. A repeat under the same id returns the
    first; the same id with another body is a 422; a second open dispute on one signal is a 409."""
    now = now or utcnow()
    key = body.get("id")
    if not isinstance(key, str) or not 0 < len(key) <= MAX_DISPUTE_KEY or not (key.isascii() and key.isprintable()):
        raise ValidationError("invalid id", errors={"id": [f"your own id: 1-{MAX_DISPUTE_KEY} printable ASCII"]})
    reason = _choice(body.get("reason"), "reason", [r.value for r in DisputeReason])
    note = _text(body.get("note"), "note", MAX_NOTE, required=False)
    signal_id = body.get("signal")
    if not isinstance(signal_id, str):
        raise ValidationError("invalid signal", errors={"signal": ["a signal id"]})
    auditlog.next_seq(session)  # the audit lock first: a repeat racing its original waits and replays
    existing = session.scalars(
        select(Dispute).where(Dispute.partner_id == partner_id, Dispute.dispute_key == key)
    ).first()
    if existing is not None:
        if (existing.signal_id, existing.reason, existing.note) != (signal_id, reason, note):
            raise ValidationError(
                "this id was used for another dispute", errors={"id": ["reused with a different body"]}
            )
        return existing, False
    signal = _readable_signal(session, signal_id, partner_id)
    if signal.status not in (SignalStatus.ACTIVE.value, SignalStatus.QUARANTINED.value):
        raise ConflictError(f"this signal is {signal.status}: nothing to dispute")
    mine = session.scalar(
        select(Dispute.id).where(
            Dispute.signal_id == signal.id,
            Dispute.partner_id == partner_id,
            Dispute.status.in_([s.value for s in QUEUE_STATUSES]),
        )
    )
    if mine is not None:
        raise ConflictError(f"you have an open dispute on this signal: {mine}", errors={"dispute": [mine]})
    dispute_id = str(uuid.uuid4())
    details = {"signal": signal.id, "collection": signal.collection_id, "reason": reason}
    if note is not None:
        details["note_sha256"] = _sha256(note)
    rec = auditlog.record(session, actor, "dispute.open", f"dispute/{dispute_id}", details, now=now)
    dispute = Dispute(
        id=dispute_id,
        source="partner",
        partner_id=partner_id,
        dispute_key=key,
        signal_id=signal.id,
        collection_id=signal.collection_id,
        contributor_id=signal.contributor_id,
        reason=reason,
        note=note,
        status=DisputeStatus.OPEN.value,
        opened_at=now,
        open_audit_seq=rec.seq,
        updated_at=now,
    )
    session.add(dispute)
    session.flush()
    return dispute, True


def open_flag_disputes(session: Session, now: datetime) -> int:
    """Open a dispute for every signal the false-positive flag marked that has none yet (scheduler job)."""
    rls.set_tenant(session, rls.SYSTEM)
    flagged = session.execute(
        select(SignalFlag.signal_id, SignalFlag.false_positive_partners)
        .where(SignalFlag.flagged_at.is_not(None))
        .where(~select(Dispute.id).where(Dispute.signal_id == SignalFlag.signal_id, Dispute.source == "flag").exists())
        .order_by(SignalFlag.signal_id)
    ).all()
    opened = 0
    for signal_id, votes in flagged:
        signal = session.get(Signal, signal_id)
        if signal is None or signal.status != SignalStatus.ACTIVE.value:
            continue
        dispute_id = str(uuid.uuid4())
        rec = auditlog.record(
            session,
            Actor.system("governance"),
            "dispute.open",
            f"dispute/{dispute_id}",
            {"signal": signal.id, "collection": signal.collection_id, "reason": "false_positive", "flag": votes},
            now=now,
        )
        session.add(
            Dispute(
                id=dispute_id,
                source="flag",
                signal_id=signal.id,
                collection_id=signal.collection_id,
                contributor_id=signal.contributor_id,
                reason=DisputeReason.FALSE_POSITIVE.value,
                status=DisputeStatus.OPEN.value,
                opened_at=now,
                open_audit_seq=rec.seq,
                updated_at=now,
            )
        )
        opened += 1
    session.flush()
    return opened


def list_disputes(
    session: Session, partner_id: str, *, mine: str = "opened", status: str | None = None, limit: int = 100
) -> list[Dispute]:
    """The partner's disputes (`opened`) or those on the signals it contributed (`contributed`), newest first."""
    _choice(mine, "mine", ["opened", "contributed"])
    column = Dispute.partner_id if mine == "opened" else Dispute.contributor_id
    query = select(Dispute).where(column == partner_id)
    if status is not None:
        query = query.where(Dispute.status == _choice(status, "status", [s.value for s in DisputeStatus]))
    return list(session.scalars(query.order_by(Dispute.opened_at.desc(), Dispute.id).limit(limit)))


def _party_dispute(session: Session, dispute_id: str, partner_id: str) -> Dispute:
    dispute = session.get(Dispute, dispute_id) if len(dispute_id) <= 36 else None
    if dispute is None or partner_id not in (dispute.partner_id, dispute.contributor_id):
        raise NotFoundError("no such dispute")
    return dispute


def decisions_of(session: Session, dispute_id: str) -> list[Decision]:
    return list(
        session.scalars(
            select(Decision)
            .where(Decision.subject_type == "dispute", Decision.subject_id == dispute_id)
            .order_by(Decision.created_at, Decision.audit_seq)
        )
    )


def get_dispute(session: Session, dispute_id: str, partner_id: str) -> tuple[Dispute, list[Decision]]:
    """A dispute the partner opened or whose signal it contributed, with its decisions."""
    dispute = _party_dispute(session, dispute_id, partner_id)
    return dispute, decisions_of(session, dispute.id)


def answer_dispute(
    session: Session, *, dispute_id: str, partner_id: str, text: Any, actor: Actor, now: datetime | None = None
) -> Dispute:
    """The contributor's one answer to a dispute on its signal."""
    now = now or utcnow()
    answer = _text(text, "answer", MAX_ANSWER, required=True)
    auditlog.next_seq(session)
    dispute = _party_dispute(session, dispute_id, partner_id)
    if dispute.contributor_id != partner_id:
        raise ForbiddenError("only the signal's contributor answers a dispute")
    if dispute.answer is not None:
        raise ConflictError("this dispute was answered already")
    if DisputeStatus(dispute.status) in FINAL:
        raise ConflictError(f"this dispute is {dispute.status}")
    auditlog.record(
        session, actor, "dispute.answer", f"dispute/{dispute.id}", {"answer_sha256": _sha256(answer or "")}, now=now
    )
    dispute.answer = answer
    dispute.answered_at = now
    dispute.updated_at = now
    session.flush()
    return dispute


# --- partners: a case's status ----------------------------------------------------------------------------

CASE_RECEIVED, CASE_ACTIVE, CASE_REMOVED = "received", "active", "removed"


@dataclass(frozen=True)
class CaseStatus:
    """Where a case's hashes are, as the partner that made the case may learn it.

    `received`: some of its hashes wait for the next seal. `active`: every one still in the feed is sealed;
    `published` gives, per collection, the seq of the batch that published the last of them. `removed`: none is
    in the feed any more (staff retired or are reviewing them); a withdrawn case has no claims and is a 404.
    `platforms` counts the other partners reading those collections whose latest ack reaches that seq in each.
    """

    status: str
    hashes: int  # the case's claims
    pending: int  # hashes waiting for the next seal
    in_feed: int  # hashes published and still in the feed
    published: list[tuple[str, int]]  # (collection id, seq), by collection id
    platforms: int


def case_status(session: Session, *, partner_id: str, case_ref: Any, hub_secret: bytes) -> CaseStatus:
    """The status of one of the partner's cases; 404 when it holds no claim under the reference (another
    partner's case, a withdrawn one, or one never made: the three are not told apart)."""
    if not isinstance(case_ref, str) or not 0 < len(case_ref) <= MAX_CASE_REF_LENGTH:
        raise ValidationError("invalid case reference", errors={"case_ref": [f"1-{MAX_CASE_REF_LENGTH} characters"]})
    digest = signals.case_digest(hub_secret, partner_id, case_ref)
    claimed = list(
        session.scalars(
            select(SignalClaim.signal_id).where(
                SignalClaim.partner_id == partner_id, SignalClaim.case_digest == digest
            )
        )
    )
    if not claimed:
        raise NotFoundError("no such case")
    # The partner's own claims were found under its tenant; the signals' state and other partners' acks are the
    # hub's to read (a partner whose access ended still has claims), and only a count of partners leaves here.
    rls.set_tenant(session, rls.SYSTEM)
    try:
        rows = session.execute(
            select(Signal.collection_id, Signal.status, SignalSeq.added_seq)
            .outerjoin(SignalSeq, SignalSeq.signal_id == Signal.id)
            .where(Signal.id.in_(claimed))
        ).all()
        live = [(c, seq) for c, status, seq in rows if status == SignalStatus.ACTIVE.value]
        pending = sum(1 for _, seq in live if seq is None)
        published: dict[str, int] = {}
        for c, seq in live:
            if seq is not None:
                published[c] = max(published.get(c, 0), seq)
        platforms = 0
        if live and not pending:
            holders: set[str] | None = None
            for c, seq in published.items():
                readers = select(CollectionMember.partner_id).where(
                    CollectionMember.collection_id == c, CollectionMember.access == Access.READER.value
                )
                acked = set(
                    session.scalars(
                        select(FeedAck.partner_id).where(
                            FeedAck.collection_id == c,
                            FeedAck.size >= seq,
                            FeedAck.partner_id != partner_id,
                            FeedAck.partner_id.in_(readers),
                        )
                    )
                )
                holders = acked if holders is None else holders & acked
            platforms = len(holders or ())
    finally:
        rls.set_tenant(session, partner_id)
    status = CASE_RECEIVED if pending else CASE_ACTIVE if live else CASE_REMOVED
    return CaseStatus(status, len(claimed), pending, len(live) - pending, sorted(published.items()), platforms)


# --- staff: queue, assignment, decisions -------------------------------------------------------------------


def queue(
    session: Session,
    *,
    statuses: Sequence[str] | None = None,
    collection_id: str | None = None,
    reason: str | None = None,
    assignee_id: str | None = None,
    older_than: timedelta | None = None,
    now: datetime | None = None,
    limit: int = 200,
) -> list[QueueRow]:
    """Disputes waiting for staff, oldest first, with their age (staff see every partner's disputes)."""
    now = now or utcnow()
    rls.set_tenant(session, rls.SYSTEM)
    wanted = [_choice(s, "status", [v.value for v in DisputeStatus]) for s in (statuses or QUEUE_STATUSES)]
    query = (
        select(Dispute, Signal.type, Signal.value, collections.Collection.slug)
        .join(Signal, Signal.id == Dispute.signal_id)
        .join(collections.Collection, collections.Collection.id == Dispute.collection_id)
        .where(Dispute.status.in_(wanted))
    )
    if collection_id is not None:
        query = query.where(Dispute.collection_id == collection_id)
    if reason is not None:
        query = query.where(Dispute.reason == _choice(reason, "reason", [r.value for r in DisputeReason]))
    if assignee_id is not None:
        query = query.where(Dispute.assignee_id == assignee_id)
    if older_than is not None:
        query = query.where(Dispute.opened_at <= now - older_than)
    rows = session.execute(query.order_by(Dispute.opened_at, Dispute.id).limit(limit)).all()
    return [QueueRow(d, now - d.opened_at, kind, value[:8], slug) for d, kind, value, slug in rows]


def staff_dispute(session: Session, dispute_id: str) -> tuple[Dispute, list[Decision]]:
    rls.set_tenant(session, rls.SYSTEM)
    dispute = session.get(Dispute, dispute_id) if len(dispute_id) <= 36 else None
    if dispute is None:
        raise NotFoundError("no such dispute")
    return dispute, decisions_of(session, dispute.id)


def _decision(
    session: Session,
    staff: Staff,
    *,
    subject_type: str,
    subject_id: str,
    action: Action,
    reason: str,
    audit_action: str,
    details: dict[str, Any],
    now: datetime,
    state: str = "effective",
    confirms_id: str | None = None,
    audit_seq: int | None = None,
) -> Decision:
    """The decision row and, unless the action wrote one already (`audit_seq`), its audit entry."""
    decision_id = str(uuid.uuid4())
    if audit_seq is None:
        entry = {**details, "decision": decision_id, "action": action.value, "reason_sha256": _sha256(reason)}
        if state != "effective":
            entry["state"] = state
        if confirms_id is not None:
            entry["confirms"] = confirms_id
        audit_seq = auditlog.record(
            session, staff.actor, audit_action, f"{subject_type}/{subject_id}", entry, now=now
        ).seq
    decision = Decision(
        id=decision_id,
        subject_type=subject_type,
        subject_id=subject_id,
        action=action.value,
        reason=reason,
        user_id=staff.user_id,
        actor_partner_id=staff.partner_id,
        state=state,
        confirms_id=confirms_id,
        details=canonical_json(details).decode() if details else None,
        audit_seq=audit_seq,
        created_at=now,
    )
    session.add(decision)
    return decision


def _locked_dispute(session: Session, dispute_id: str) -> Dispute:
    rls.set_tenant(session, rls.SYSTEM)
    auditlog.next_seq(session)  # the audit lock before the row locks: the order the sealer takes them in
    dispute = (
        session.scalars(select(Dispute).where(Dispute.id == dispute_id).with_for_update()).first()
        if isinstance(dispute_id, str) and len(dispute_id) <= 36
        else None
    )
    if dispute is None:
        raise NotFoundError("no such dispute")
    return dispute


def assign(
    session: Session, *, dispute_id: str, assignee_id: str, staff: Staff, now: datetime | None = None
) -> Dispute:
    """Give a dispute to a staff user of a governance partner (a step with its own audit entry)."""
    now = now or utcnow()
    dispute = _locked_dispute(session, dispute_id)
    if DisputeStatus(dispute.status) in FINAL:
        raise ConflictError(f"this dispute is {dispute.status}")
    user = get_user(session, assignee_id)
    if tenants.get_partner(session, user.partner_id).kind != "governance" or user.disabled_at is not None:
        raise ValidationError("invalid assignee", errors={"assignee": ["an active staff user of a governance body"]})
    _decision(
        session,
        staff,
        subject_type="dispute",
        subject_id=dispute.id,
        action=Action.ASSIGN,
        reason=f"assigned to {user.id}",
        audit_action="dispute.assign",
        details={"assignee": user.id},
        now=now,
    )
    dispute.assignee_id = user.id
    dispute.updated_at = now
    session.flush()
    return dispute


def _proposal(session: Session, dispute_id: str) -> Decision | None:
    """The uphold awaiting confirmation on a dispute, if any."""
    return session.scalars(
        select(Decision)
        .where(
            Decision.subject_type == "dispute",
            Decision.subject_id == dispute_id,
            Decision.action == Action.UPHOLD.value,
            Decision.state == "proposed",
        )
        .order_by(Decision.created_at.desc())
    ).first()


def decide(
    session: Session,
    *,
    dispute_id: str,
    action: Any,
    reason: Any,
    staff: Staff,
    four_eyes: bool,
    now: datetime | None = None,
) -> Decision:
    """Decide a dispute: uphold, reject, quarantine or release (see the module's docstring)."""
    now = now or utcnow()
    act = Action(_choice(action, "action", [*DECIDE_ACTIONS, Action.CONFIRM.value]))
    why = _text(reason, "reason", MAX_REASON_TEXT, required=True) or ""
    dispute = _locked_dispute(session, dispute_id)
    status = DisputeStatus(dispute.status)
    if act is Action.CONFIRM:
        return _confirm(session, dispute, why, staff, now)
    if status not in _FROM[act]:
        raise ConflictError(f"a dispute that is {status.value} cannot be given `{act.value}`")
    signal = session.scalars(select(Signal).where(Signal.id == dispute.signal_id).with_for_update()).one()
    details: dict[str, Any] = {"dispute": dispute.id, "signal": signal.id}
    if act is Action.UPHOLD and four_eyes:
        decision = _decision(
            session,
            staff,
            subject_type="dispute",
            subject_id=dispute.id,
            action=act,
            reason=why,
            audit_action="dispute.decide",
            details=details,
            now=now,
            state="proposed",
        )
        # A quarantined signal stays withheld while the uphold waits; rejecting the proposal releases it.
        dispute.status = DisputeStatus.AWAITING_CONFIRMATION.value
        dispute.updated_at = now
        session.flush()
        return decision
    if act is Action.REJECT and status is DisputeStatus.AWAITING_CONFIRMATION:
        proposal = _proposal(session, dispute.id)
        details["rejects"] = proposal.id if proposal is not None else None
    decision = _apply(session, dispute, signal, act, why, staff, details, now)
    session.flush()
    return decision


def _confirm(session: Session, dispute: Dispute, why: str, staff: Staff, now: datetime) -> Decision:
    proposal = _proposal(session, dispute.id)
    if dispute.status != DisputeStatus.AWAITING_CONFIRMATION.value or proposal is None:
        raise ConflictError("no uphold of this dispute awaits confirmation")
    if (proposal.user_id, proposal.actor_partner_id) == (staff.user_id, staff.partner_id):
        raise ForbiddenError("an uphold is confirmed by a second staff member, not the one who proposed it")
    signal = session.scalars(select(Signal).where(Signal.id == dispute.signal_id).with_for_update()).one()
    details = {"dispute": dispute.id, "signal": signal.id, "confirms": proposal.id}
    return _apply(session, dispute, signal, Action.UPHOLD, why, staff, details, now, confirms=proposal.id)


def _apply(
    session: Session,
    dispute: Dispute,
    signal: Signal,
    act: Action,
    why: str,
    staff: Staff,
    details: dict[str, Any],
    now: datetime,
    *,
    confirms: str | None = None,
) -> Decision:
    """Carry out an effective decision on the dispute's signal, with one audit entry."""
    if act is Action.UPHOLD:
        found = signals.active_of_value(session, signal.type, signal.value)
        details["removed"] = sorted(s.id for s in found)
        details["type"] = signal.type
    elif act is Action.QUARANTINE and signal.status != SignalStatus.ACTIVE.value:
        raise ConflictError(f"this signal is {signal.status}: nothing to withhold")
    elif act is Action.RELEASE and signal.status != SignalStatus.QUARANTINED.value:
        raise ConflictError(f"this signal is {signal.status}, not quarantined")
    if act in (Action.RELEASE, Action.REJECT) and signal.status == SignalStatus.QUARANTINED.value:
        # Published again under a new id, named in the decision's audit entry.
        details["republished"] = signals.new_ids(1)[0]
    decision = _decision(
        session,
        staff,
        subject_type="dispute",
        subject_id=dispute.id,
        action=Action.CONFIRM if confirms else act,
        reason=why,
        audit_action="dispute.decide",
        details=details,
        now=now,
        confirms_id=confirms,
    )
    seq = decision.audit_seq
    if act is Action.UPHOLD:
        signals.retire_found(session, signal.type, signal.value, found, seq, now, also=signal)
        dispute.status = DisputeStatus.UPHELD.value
    elif act is Action.REJECT:
        if signal.status == SignalStatus.QUARANTINED.value:
            signals.republish(session, signal, details["republished"], seq, now)
        dispute.status = DisputeStatus.REJECTED.value
    elif act is Action.QUARANTINE:
        signals.withhold(session, signal, seq, now)
        dispute.status = DisputeStatus.QUARANTINED.value
    elif act is Action.RELEASE:
        signals.republish(session, signal, details["republished"], seq, now)
        dispute.status = DisputeStatus.RELEASED.value
    if dispute.status in (DisputeStatus.UPHELD, DisputeStatus.REJECTED, DisputeStatus.RELEASED):
        dispute.decided_at = now
    dispute.updated_at = now
    webhooks.queue_dispute_event(
        session,
        partner_ids=(dispute.partner_id, dispute.contributor_id),
        dispute_id=dispute.id,
        collection_id=dispute.collection_id,
        audit_seq=seq,
        now=now,
    )
    return decision


# --- partners and collection membership ----------------------------------------------------------------


def _with_decision(
    session: Session,
    staff: Staff,
    action: Callable[[], str],
    *,
    kind: Action,
    subject_type: str,
    details: dict[str, Any],
    reason: Any,
    unchanged: str,
    now: datetime,
) -> Decision:
    """Run an action that writes its own audit entry (and returns its subject id), and record the decision
    beside that entry; an action that wrote nothing changed nothing (a 409 with `unchanged`)."""
    why = _text(reason, "reason", MAX_REASON_TEXT, required=True) or ""
    rls.set_tenant(session, rls.SYSTEM)
    before = auditlog.next_seq(session)  # the audit lock, held to the end: the entry the action writes is the latest
    subject_id = action()
    seq = auditlog.next_seq(session) - 1
    if seq < before:
        raise ConflictError(unchanged)
    decision = _decision(
        session,
        staff,
        subject_type=subject_type,
        subject_id=subject_id,
        action=kind,
        reason=why,
        audit_action="",
        details=details,
        now=now,
        audit_seq=seq,
    )
    session.flush()
    return decision


def set_partner_status(
    session: Session, *, partner_id: str, suspend: bool, reason: Any, staff: Staff, now: datetime | None = None
) -> Decision:
    """Suspend or reinstate a partner, as a decision with a reason (already so: a 409)."""
    status = PartnerStatus.SUSPENDED if suspend else PartnerStatus.ACTIVE

    def act() -> str:
        return tenants.set_partner_status(session, partner_id, status.value, staff.actor).id

    return _with_decision(
        session, staff, act, kind=Action.SUSPEND if suspend else Action.REINSTATE, subject_type="partner",
        details={}, reason=reason, unchanged=f"the partner is already {status.value}", now=now or utcnow(),
    )


def set_membership(
    session: Session,
    *,
    collection_id: str,
    partner_id: str,
    access: Any,
    grant: bool,
    reason: Any,
    staff: Staff,
    hub_name: str,
    signer: Any,
    now: datetime | None = None,
) -> Decision:
    """Grant or revoke a partner's read or contribute access to a collection, as a decision with a reason."""
    now = now or utcnow()
    level = Access(_choice(access, "access", [a.value for a in Access]))

    def act() -> str:
        return collections.set_access(
            session, collection_id, partner_id, level, grant, actor=staff.actor, hub_name=hub_name, signer=signer,
            now=now,
        ).id

    return _with_decision(
        session, staff, act, kind=Action.GRANT if grant else Action.REVOKE, subject_type="collection",
        details={"partner": partner_id, "access": level.value}, reason=reason,
        unchanged=f"the partner {'already has' if grant else 'does not have'} {level.value} access", now=now,
    )


# --- a signal's history ---------------------------------------------------------------------------------


def signal_history(session: Session, signal_id: str) -> list[HistoryEvent]:
    """What happened to a signal, oldest first: added, reports by outcome, flag, disputes, decisions, removal."""
    rls.set_tenant(session, rls.SYSTEM)
    signal = session.get(Signal, signal_id)
    if signal is None:
        raise NotFoundError("no such signal")
    events = [
        HistoryEvent(signal.created_at, "added", f"{signal.type} added to its collection", signal.added_audit_seq)
    ]
    for outcome, count, first in session.execute(
        select(Report.outcome, func.count(), func.min(Report.received_at))
        .where(Report.signal_id == signal.id)
        .group_by(Report.outcome)
    ):
        events.append(HistoryEvent(first, "report", f"{count} report(s) now {outcome}", None))
    flag = session.get(SignalFlag, signal.id)
    if flag is not None and flag.flagged_at is not None:
        events.append(
            HistoryEvent(
                flag.flagged_at,
                "flag",
                f"flagged: {flag.false_positive_partners} partners reported a false positive",
                flag.flag_audit_seq,
            )
        )
    for dispute in session.scalars(select(Dispute).where(Dispute.signal_id == signal.id)):
        events.append(
            HistoryEvent(dispute.opened_at, "dispute", f"dispute opened ({dispute.reason})", dispute.open_audit_seq)
        )
        for d in decisions_of(session, dispute.id):
            events.append(HistoryEvent(d.created_at, "decision", f"{d.action} ({d.state}): {d.reason}", d.audit_seq))
    if signal.removed_at is not None:
        events.append(
            HistoryEvent(
                signal.removed_at, "removed", f"{signal.status} ({signal.removal_reason})", signal.removed_audit_seq
            )
        )
    return sorted(events, key=lambda e: (e.at, e.audit_seq or 0))
