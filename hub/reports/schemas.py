"""The reports API's contract (POST, PATCH, GET) and its JSON views, derived from `hub.reports.fields`, where
each of a report's fields is declared once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from audit.canonical import format_time
from hub.errors import BadRequestError
from hub.feed.models import FEED_TYPES
from hub.feed.signals import HEX_LENGTHS
from hub.reports.fields import CONTENT_REF, HISTORY, MATCH, OUTCOME, SERVED, Field
from hub.reports.models import Report, ReportOutcome
from hub.reports.service import MAX_PAGE, MAX_REPORTS_PER_REQUEST, ReportDocument
from hub.web import ItemList, StrictBoolean
from partners.matching.vpdq import MAX_VPDQ_CHARS


def _field(f: Field, *, required: bool | None = None) -> fields.Field:
    """The marshmallow field documenting (and, on PATCH and the list's arguments, checking) `f`."""
    kwargs: dict[str, Any] = {
        "required": not f.nullable if required is None else required,
        "allow_none": f.nullable,
        "metadata": {"description": f.description} if f.description else {},
    }
    if f.kind == "integer":
        return fields.Integer(strict=True, validate=validate.Range(f.low, f.high) if f.high else None, **kwargs)
    if f.kind == "boolean":
        return StrictBoolean(**kwargs)
    if f.kind == "choice":
        return fields.String(validate=validate.OneOf(f.choices), **kwargs)
    if f.kind == "time":  # the service parses times (RFC 3339 with a zone, whole seconds)
        kwargs["metadata"]["format"] = "date-time"
        return fields.String(**kwargs)
    checks: list[validate.Validator] = [validate.Length(f.low, f.high)] if f.high else []
    if f.pattern is not None:
        checks.append(validate.Regexp(f"^{f.pattern}$"))
    return fields.String(validate=checks, **kwargs)


def _fields(*groups: tuple[Field, ...]) -> dict[str, fields.Field]:
    return {f.name: _field(f) for group in groups for f in group}


class ReportSignalRefSchema(Schema):
    """The signal as the partner's mirror holds it (`{"id"}`), or `{"type", "value"}`: one form, not both."""

    id = fields.String(validate=validate.Length(1, 36), metadata={"description": "signal id from a batch"})
    type = fields.String(validate=validate.OneOf(list(FEED_TYPES)))
    value = fields.String(
        validate=validate.Length(min(HEX_LENGTHS.values()), MAX_VPDQ_CHARS),
        metadata={
            "description": "hex: " + ", ".join(f"{kind} {n} digits" for kind, n in HEX_LENGTHS.items())
            + "; vpdq: the video's frames (docs/formats.md)"
        },
    )


# PATCH /v1/reports/{id}: a report's outcome.
OutcomeSchema = Schema.from_dict(_fields(OUTCOME), name="OutcomeSchema")

# One report of POST /v1/reports; `hub.reports.service.submit` enforces these fields and limits, then checks
# the signal, collection and seq against what the partner was served, naming each bad item.
ReportItemSchema = Schema.from_dict(
    {
        **_fields(MATCH, OUTCOME, (CONTENT_REF,)),
        "signal": fields.Nested(ReportSignalRefSchema, required=True),
    },
    name="ReportItemSchema",
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


ReportHistorySchema = Schema.from_dict(_fields(OUTCOME, HISTORY), name="ReportHistorySchema")

ReportSchema = Schema.from_dict(
    {
        **_fields(MATCH, OUTCOME, SERVED),
        "document": fields.Dict(metadata={"description": "the canonical document of the current version"}),
        "history": fields.List(fields.Nested(ReportHistorySchema)),
    },
    name="ReportSchema",
)


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
    outcome = _field(next(f for f in OUTCOME if f.name == "outcome"), required=False)
    collection = fields.String()
    content_ref = _field(CONTENT_REF, required=False)
    cursor = fields.String()
    limit = fields.Integer(load_default=100, validate=validate.Range(1, MAX_PAGE))


def _json(value: Any) -> Any:
    return format_time(value) if isinstance(value, datetime) else value


def report_view(report: Report, history: list[ReportOutcome] | None = None) -> dict[str, Any]:
    out = {f.name: _json(getattr(report, f.column)) for f in (*MATCH, *OUTCOME, *SERVED)}
    if history is not None:
        out["document"] = ReportDocument.of(report).to_dict()
        out["history"] = [{f.name: _json(getattr(h, f.column)) for f in (*OUTCOME, *HISTORY)} for h in history]
    return out
