"""The governance API's contract: disputes (partners), cases, and the staff queue and decisions."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from audit.canonical import format_time
from hub.governance.models import (
    MAX_ANSWER,
    MAX_DISPUTE_KEY,
    MAX_NOTE,
    MAX_REASON_TEXT,
    Decision,
    Dispute,
    DisputeReason,
    DisputeStatus,
)
from hub.governance.service import DECIDE_ACTIONS, HistoryEvent, QueueRow
from hub.web import StrictBoolean

_REASONS = [r.value for r in DisputeReason]
_STATUSES = [s.value for s in DisputeStatus]


class DisputeOpenSchema(Schema):
    id = fields.String(
        required=True,
        validate=validate.Length(1, MAX_DISPUTE_KEY),
        metadata={"description": "your own id for the dispute: sending it again returns the first"},
    )
    signal = fields.String(required=True, validate=validate.Length(1, 36), metadata={"description": "signal id"})
    reason = fields.String(required=True, validate=validate.OneOf(_REASONS))
    note = fields.String(validate=validate.Length(1, MAX_NOTE), metadata={"description": "a short note for staff"})


class DisputeListArgsSchema(Schema):
    mine = fields.String(
        load_default="opened",
        validate=validate.OneOf(["opened", "contributed"]),
        metadata={"description": "`opened`: your disputes; `contributed`: disputes on signals you contributed"},
    )
    status = fields.String(validate=validate.OneOf(_STATUSES))


class AnswerSchema(Schema):
    answer = fields.String(required=True, validate=validate.Length(1, MAX_ANSWER))


class DecisionViewSchema(Schema):
    id = fields.String()
    action = fields.String()
    state = fields.String(metadata={"description": "`effective`, or `proposed` for an uphold awaiting confirmation"})
    reason = fields.String()
    at = fields.String(metadata={"format": "date-time"})
    confirms = fields.String(allow_none=True)
    audit_seq = fields.Integer()


class DisputeViewSchema(Schema):
    id = fields.String()
    source = fields.String(metadata={"description": "`partner`, or `flag` when the false-positive flag opened it"})
    signal = fields.String()
    collection = fields.String()
    reason = fields.String()
    note = fields.String(allow_none=True)
    status = fields.String(validate=validate.OneOf(_STATUSES))
    opened_at = fields.String(metadata={"format": "date-time"})
    answer = fields.String(allow_none=True)
    answered_at = fields.String(allow_none=True)
    decided_at = fields.String(allow_none=True)
    audit_seq = fields.Integer(metadata={"description": "the audit entry that opened it"})
    decisions = fields.List(fields.Nested(DecisionViewSchema), metadata={"description": "oldest first"})


class DisputeListSchema(Schema):
    disputes = fields.List(fields.Nested(DisputeViewSchema))


class WithdrawnSchema(Schema):
    audit_seq = fields.Integer()
    claims = fields.Integer(metadata={"description": "claims of this case withdrawn"})
    removed = fields.Integer(metadata={"description": "signals that left the feed: no claim was left on them"})


class CasePublishedSchema(Schema):
    collection = fields.String()
    seq = fields.Integer(metadata={"description": "the batch that published the last of the case's hashes there"})


class CaseStatusSchema(Schema):
    status = fields.String(
        metadata={"description": "received (waiting for the next seal), active (sealed, in the feed) or removed"}
    )
    hashes = fields.Integer(metadata={"description": "the case's claims"})
    pending = fields.Integer(metadata={"description": "hashes waiting for the next seal"})
    in_feed = fields.Integer(metadata={"description": "hashes published and still in the feed"})
    published = fields.List(fields.Nested(CasePublishedSchema))
    platforms = fields.Integer(
        metadata={"description": "other partners reading the collections whose latest ack reaches `seq` in each"}
    )


class QueueArgsSchema(Schema):
    status = fields.List(fields.String(validate=validate.OneOf(_STATUSES)))
    collection = fields.String(validate=validate.Length(1, 36))
    reason = fields.String(validate=validate.OneOf(_REASONS))
    assignee = fields.String(validate=validate.Length(1, 36))
    older_than_days = fields.Integer(validate=validate.Range(0, 3650))


class QueueRowSchema(Schema):
    dispute = fields.Nested(DisputeViewSchema)
    age_seconds = fields.Integer()
    signal_type = fields.String()
    signal_prefix = fields.String(metadata={"description": "first 8 hex digits of the hash, never the whole hash"})
    collection_slug = fields.String()
    assignee = fields.String(allow_none=True)


class QueueSchema(Schema):
    queue = fields.List(fields.Nested(QueueRowSchema))


class AssignSchema(Schema):
    assignee = fields.String(
        required=True, validate=validate.Length(1, 254), metadata={"description": "user id or email"}
    )


class DecideSchema(Schema):
    action = fields.String(required=True, validate=validate.OneOf([*DECIDE_ACTIONS, "confirm"]))
    reason = fields.String(required=True, validate=validate.Length(1, MAX_REASON_TEXT))


class ReasonSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(1, MAX_REASON_TEXT))


class MembershipSchema(Schema):
    partner = fields.String(required=True, validate=validate.Length(1, 36))
    access = fields.String(required=True, validate=validate.OneOf(["reader", "contributor"]))
    grant = StrictBoolean(required=True, metadata={"description": "true grants, false revokes"})
    reason = fields.String(required=True, validate=validate.Length(1, MAX_REASON_TEXT))


class HistoryEventSchema(Schema):
    at = fields.String(metadata={"format": "date-time"})
    kind = fields.String()
    summary = fields.String()
    audit_seq = fields.Integer(allow_none=True)


class StaffDisputeSchema(DisputeViewSchema):
    assignee = fields.String(allow_none=True)
    history = fields.List(fields.Nested(HistoryEventSchema))


def _time(value: Any) -> str | None:
    return None if value is None else format_time(value)


def decision_view(d: Decision) -> dict[str, Any]:
    return {
        "id": d.id,
        "action": d.action,
        "state": d.state,
        "reason": d.reason,
        "at": format_time(d.created_at),
        "confirms": d.confirms_id,
        "audit_seq": d.audit_seq,
    }


def dispute_view(d: Dispute, decisions: list[Decision] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": d.id,
        "source": d.source,
        "signal": d.signal_id,
        "collection": d.collection_id,
        "reason": d.reason,
        "note": d.note,
        "status": d.status,
        "opened_at": format_time(d.opened_at),
        "answer": d.answer,
        "answered_at": _time(d.answered_at),
        "decided_at": _time(d.decided_at),
        "audit_seq": d.open_audit_seq,
    }
    if decisions is not None:
        # Assignments are staff-internal steps; partners see what was decided.
        view["decisions"] = [decision_view(x) for x in decisions if x.action != "assign"]
    return view


def queue_view(row: QueueRow) -> dict[str, Any]:
    return {
        "dispute": dispute_view(row.dispute),
        "age_seconds": int(row.age.total_seconds()),
        "signal_type": row.signal_type,
        "signal_prefix": row.prefix,
        "collection_slug": row.collection_slug,
        "assignee": row.dispute.assignee_id,
    }


def history_view(e: HistoryEvent) -> dict[str, Any]:
    return {"at": format_time(e.at), "kind": e.kind, "summary": e.summary, "audit_seq": e.audit_seq}
