"""The reports API's contract in the OpenAPI document, and the JSON views of a report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from audit.canonical import format_time
from hub.reports.models import MAX_REPORT_ID_LENGTH, OUTCOMES, SURFACES, Report, ReportOutcome
from hub.reports.service import MAX_CONTENT_REF_LENGTH, MAX_PAGE, MAX_REPORTS_PER_REQUEST, ReportDocument


class ReportSignalRefSchema(Schema):
    """The signal as the partner's mirror holds it (`id`), or its `type` and `value`."""

    id = fields.String(metadata={"description": "signal id from a batch"})
    type = fields.String(validate=validate.OneOf(("pdq", "md5", "sha256")))
    value = fields.String(metadata={"description": "lowercase hex"})


class ReportItemSchema(Schema):
    """One report (POST /v1/reports); the service checks every field and names each bad item."""

    id = fields.String(
        required=True,
        metadata={"description": f"the partner's own report id (1-{MAX_REPORT_ID_LENGTH} of A-Za-z0-9._:-)"},
    )
    signal = fields.Nested(ReportSignalRefSchema, required=True)
    collection = fields.String(required=True)
    seq = fields.Integer(required=True, metadata={"description": "batch seq that brought the signal"})
    distance = fields.Integer(required=True, metadata={"description": "0 for md5/sha256; PDQ bits"})
    outcome = fields.String(required=True, validate=validate.OneOf(OUTCOMES))
    matched_at = fields.String(required=True, metadata={"description": "RFC 3339"})
    actioned_at = fields.String(
        allow_none=True, metadata={"description": "RFC 3339; required unless outcome is pending_review"}
    )
    automated_detection = fields.Boolean(required=True)
    automated_decision = fields.Boolean(required=True)
    surface = fields.String(required=True, validate=validate.OneOf(SURFACES))
    content_ref = fields.String(
        required=True,
        metadata={
            "description": f"the partner's own reference (1-{MAX_CONTENT_REF_LENGTH} characters); "
            "stored only as an HMAC under the hub secret"
        },
    )


class ReportBatchSchema(Schema):
    reports = fields.List(
        fields.Nested(ReportItemSchema),
        required=True,
        metadata={"description": f"1-{MAX_REPORTS_PER_REQUEST} reports"},
    )


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


class ReportOutcomeChangeSchema(Schema):
    """PATCH /v1/reports/{id}: the new outcome."""

    outcome = fields.String(required=True, validate=validate.OneOf(OUTCOMES))
    actioned_at = fields.String(allow_none=True)
    automated_decision = fields.Boolean(required=True)


class ReportHistorySchema(Schema):
    version = fields.Integer()
    outcome = fields.String()
    actioned_at = fields.String(allow_none=True)
    automated_decision = fields.Boolean()
    recorded_at = fields.String()
    sha256 = fields.String(metadata={"description": "SHA-256 of the report's canonical JSON at this version"})
    audit_seq = fields.Integer()


class ReportSchema(Schema):
    id = fields.String()
    signal = fields.String()
    collection = fields.String()
    seq = fields.Integer()
    distance = fields.Integer()
    surface = fields.String()
    content_ref_digest = fields.String()
    matched_at = fields.String()
    automated_detection = fields.Boolean()
    outcome = fields.String()
    version = fields.Integer()
    actioned_at = fields.String(allow_none=True)
    automated_decision = fields.Boolean()
    received_at = fields.String()
    updated_at = fields.String()
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
