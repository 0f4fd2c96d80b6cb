"""The reports API's contract (a report's fields declared once: POST, PATCH, GET) and its JSON views."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from audit.canonical import format_time
from hub.errors import BadRequestError
from hub.feed.signals import HEX_LENGTHS
from hub.reports.models import MAX_REPORT_ID_LENGTH, OUTCOMES, SURFACES, Report, ReportOutcome
from hub.reports.service import (
    MAX_CONTENT_REF_LENGTH,
    MAX_PAGE,
    MAX_REPORTS_PER_REQUEST,
    MAX_SEQ,
    PENDING,
    ReportDocument,
)
from hub.web import ItemList, StrictBoolean

_TIME = {"format": "date-time"}


class ReportSignalRefSchema(Schema):
    """The signal as the partner's mirror holds it (`{"id"}`), or `{"type", "value"}`: one form, not both."""

    id = fields.String(validate=validate.Length(1, 36), metadata={"description": "signal id from a batch"})
    type = fields.String(validate=validate.OneOf(list(HEX_LENGTHS)))
    value = fields.String(
        validate=[validate.Length(min(HEX_LENGTHS.values()), max(HEX_LENGTHS.values())),
                  validate.Regexp("^[0-9a-fA-F]+$")],
        metadata={"description": "hex: " + ", ".join(f"{kind} {n} digits" for kind, n in HEX_LENGTHS.items())},
    )


class OutcomeSchema(Schema):
    """A report's outcome: the body of PATCH /v1/reports/{id}, and part of every report and of each version
    of its history. Times are taken as sent; the service parses them (RFC 3339 with a zone, whole seconds)."""

    outcome = fields.String(required=True, validate=validate.OneOf(OUTCOMES))
    actioned_at = fields.String(
        allow_none=True,
        metadata={**_TIME, "description": f"null for {PENDING}, required otherwise; not before matched_at"},
    )
    automated_decision = StrictBoolean(required=True)


class _MatchSchema(OutcomeSchema):
    """What a report says about its match: fixed when the report is made."""

    id = fields.String(
        required=True,
        validate=[validate.Length(1, MAX_REPORT_ID_LENGTH), validate.Regexp("^[A-Za-z0-9][A-Za-z0-9._:-]*$")],
        metadata={"description": "the partner's own report id"},
    )
    collection = fields.String(required=True, validate=validate.Length(1, 36))
    seq = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(1, MAX_SEQ),
        metadata={"description": "the collection's batch seq in which the partner received the signal"},
    )
    distance = fields.Integer(
        required=True, strict=True, validate=validate.Range(0, 256), metadata={"description": "0 for md5/sha256"}
    )
    surface = fields.String(required=True, validate=validate.OneOf(SURFACES))
    matched_at = fields.String(required=True, metadata={**_TIME, "description": "not in the future"})
    automated_detection = StrictBoolean(required=True)


class ReportItemSchema(_MatchSchema):
    """One report of POST /v1/reports; `hub.reports.service.submit` enforces these fields and limits, then
    checks the signal, collection and seq against what the partner was served, naming each bad item."""

    signal = fields.Nested(ReportSignalRefSchema, required=True)
    content_ref = fields.String(
        required=True,
        validate=validate.Length(1, MAX_CONTENT_REF_LENGTH),
        metadata={"description": "the partner's own reference; stored only as an HMAC under the hub secret"},
    )


class ReportBatchSchema(Schema):
    reports = ItemList(ReportItemSchema, max_items=MAX_REPORTS_PER_REQUEST)

    @pre_load
    def _only_reports(self, data: Any, **_kwargs: Any) -> Any:
        if not isinstance(data, dict) or set(data) != {"reports"}:
            raise BadRequestError('the body is {"reports": [...]}')
        return data


class ReportSubmittedItemSchema(Schema):
    id = fields.String()
    created = fields.Boolean(metadata={"description": "false for a replay of an earlier identical report"})
    sha256 = fields.String(metadata={"description": "SHA-256 of the report's canonical JSON (version 1)"})
    audit_seq = fields.Integer(allow_none=True, metadata={"description": "audit entry listing that digest"})


class ReportsSubmittedSchema(Schema):
    audit_seq = fields.Integer(allow_none=True)
    created = fields.Integer()
    replayed = fields.Integer()
    reports = fields.List(fields.Nested(ReportSubmittedItemSchema))


class ReportHistorySchema(OutcomeSchema):
    version = fields.Integer()
    recorded_at = fields.String(metadata=_TIME)
    sha256 = fields.String(metadata={"description": "SHA-256 of the report's canonical JSON at this version"})
    audit_seq = fields.Integer()


class ReportSchema(_MatchSchema):
    signal = fields.String(metadata={"description": "the signal id"})
    content_ref_digest = fields.String()
    version = fields.Integer()
    received_at = fields.String(metadata=_TIME)
    updated_at = fields.String(metadata=_TIME)
    document = fields.Dict(metadata={"description": "the canonical document of the current version"})
    history = fields.List(fields.Nested(ReportHistorySchema))


class ReportPageSchema(Schema):
    reports = fields.List(fields.Nested(ReportSchema))
    next = fields.String(allow_none=True, metadata={"description": "cursor of the next page"})


class UTCTime(fields.AwareDateTime):
    """An RFC 3339 time with a zone, in UTC; one that leaves years 1-9999 in UTC is a 422, not an overflow."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        t = super()._deserialize(value, attr, data, **kwargs)
        try:
            return t.astimezone(UTC)
        except OverflowError as e:  # 0001-01-01T00:00:00+01:00, 9999-12-31T23:59:59-01:00
            raise ValidationError("a time within years 1-9999 in UTC") from e


class ReportListArgsSchema(Schema):
    since = UTCTime(metadata={"description": "matched_at >= since (RFC 3339)"})
    until = UTCTime(metadata={"description": "matched_at < until (RFC 3339)"})
    outcome = fields.String(validate=validate.OneOf(OUTCOMES))
    collection = fields.String()
    content_ref = fields.String(validate=validate.Length(1, MAX_CONTENT_REF_LENGTH))
    cursor = fields.String()
    limit = fields.Integer(load_default=100, validate=validate.Range(1, MAX_PAGE))


def _t(value: Any) -> str | None:
    return None if value is None else format_time(value)


def report_view(report: Report, history: list[ReportOutcome] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": report.report_id,
        "signal": report.signal_id,
        "collection": report.collection_id,
        "seq": report.seq,
        "distance": report.distance,
        "surface": report.surface,
        "content_ref_digest": report.content_ref_digest,
        "matched_at": _t(report.matched_at),
        "automated_detection": report.automated_detection,
        "outcome": report.outcome,
        "version": report.version,
        "actioned_at": _t(report.actioned_at),
        "automated_decision": report.automated_decision,
        "received_at": _t(report.received_at),
        "updated_at": _t(report.updated_at),
    }
    if history is not None:
        out["document"] = ReportDocument.of(report).to_dict()
        out["history"] = [
            {
                "version": h.version,
                "outcome": h.outcome,
                "actioned_at": _t(h.actioned_at),
                "automated_decision": h.automated_decision,
                "recorded_at": _t(h.recorded_at),
                "sha256": h.report_sha256,
                "audit_seq": h.audit_seq,
            }
            for h in history
        ]
    return out
