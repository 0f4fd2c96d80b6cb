"""`/v1/exports` (scope `exports:read`, regulator and governance partners) and the public `/transparency` page."""

from __future__ import annotations

import tempfile
from typing import Any

from flask import Blueprint as FlaskBlueprint
from flask import Response, send_file
from marshmallow import Schema, fields, validate

from audit.exports import parse_period
from hub.errors import ForbiddenError, NotFoundError, ValidationError
from hub.exports import page, service
from hub.identity.auth import current_principal, require_scope
from hub.transparency.keys import HubKeys, serving_keys
from hub.web import Blueprint, db, settings, state

blp = Blueprint("exports", __name__, description="Signed, suppressed transparency bundles of a period")
public = FlaskBlueprint("transparency_page", __name__)

_SCOPE = "exports:read"
_KINDS = frozenset({"regulator", "governance"})


class ExportRequestSchema(Schema):
    period = fields.String(
        validate=validate.Length(1, 16),
        metadata={"description": "a quarter (`2026-Q3`) or a month (`2026-07`); or give `from` and `to`"},
    )
    from_ = fields.String(
        data_key="from", validate=validate.Length(1, 32),
        metadata={"description": "start, a date (`2026-07-01`) or an RFC 3339 UTC time; included"},
    )
    to = fields.String(
        validate=validate.Length(1, 32), metadata={"description": "end, a date or an RFC 3339 UTC time; excluded"}
    )


class ExportSchema(Schema):
    id = fields.String()
    period = fields.Dict(metadata={"description": "label, from (included) and to (excluded)"})
    created_at = fields.String()
    checkpoint_size = fields.Integer(metadata={"description": "the signed audit checkpoint it was drawn at"})
    entries = fields.Dict(metadata={"description": "the period's audit entries [first, end)"})
    threshold = fields.Integer(metadata={"description": "small-cell threshold"})
    bundle_sha256 = fields.String(metadata={"description": "SHA-256 of the bundle file"})
    bundle_bytes = fields.Integer()
    published = fields.Boolean(metadata={"description": "shown on /transparency"})
    audit_seq = fields.Integer(metadata={"description": "the audit entry that records the export"})
    aggregates = fields.Dict(metadata={"description": "the published aggregates (null: withheld)"})


class ExportListSchema(Schema):
    exports = fields.List(fields.Nested(ExportSchema))


def _keys() -> HubKeys:
    return serving_keys(state().services, settings(), db())


def _allowed() -> Any:
    principal = current_principal()
    if principal.partner_kind not in _KINDS:
        raise ForbiddenError("exports are for regulator and governance partners")
    return principal


@blp.route("/v1/exports", methods=["POST"])
@require_scope(_SCOPE)
@blp.arguments(ExportRequestSchema)
@blp.response(201, ExportSchema)
@blp.alt_response(409, description="the period has not closed in a signed audit checkpoint yet")
@blp.alt_response(422, description="not a period such as 2026-Q3 or 2026-07, nor from and to")
def create_export(args: dict[str, Any]) -> dict[str, Any]:
    """Draw the bundle of a period at the latest audit checkpoint (an audit entry records it)."""
    principal = _allowed()
    try:
        period = parse_period(args.get("period"), args.get("from_"), args.get("to"))
    except ValueError as e:
        raise ValidationError(str(e), errors={"json": [str(e)]}) from None
    row = service.create(
        db(), _keys(), period, actor=principal.actor(), partner_id=principal.partner_id,
        threshold=settings().export_min_cell,
    )
    return service.view(row)


@blp.route("/v1/exports", methods=["GET"])
@require_scope(_SCOPE)
@blp.response(200, ExportListSchema)
def list_exports() -> dict[str, Any]:
    """The newest 100 exports."""
    _allowed()
    return {"exports": [service.view(r) for r in service.list_exports(db())]}


@blp.route("/v1/exports/<string:export_id>", methods=["GET"])
@require_scope(_SCOPE)
@blp.response(200, description="the bundle (application/zip); verify it with `hashfed-audit verify-export`")
@blp.alt_response(404, description="no such export")
@blp.alt_response(409, description="the bundle can no longer be written byte for byte as signed")
def download_export(export_id: str) -> Response:
    """The bundle as a zip file (written again from the database; its SHA-256 is the one listed)."""
    _allowed()
    return _bundle_response(service.get(db(), export_id))


def _bundle_response(row: Any) -> Response:
    out = tempfile.TemporaryFile()
    service.write(db(), _keys(), row, out)
    response = send_file(
        out, mimetype="application/zip", as_attachment=True,
        download_name=f"hashfed-export-{row.period_label.replace('/', '_')}-{row.id[:8]}.zip",
    )
    response.headers["Digest"] = f"sha-256={row.bundle_sha256}"
    response.headers["Cache-Control"] = "private, max-age=0"
    return response


@public.route("/transparency", methods=["GET"])
def transparency_page() -> Response:
    """The latest published period's suppressed aggregates, the bundle's digest and a link to it."""
    row = service.latest_published(db())
    return page.response(page.render(row))


@public.route("/transparency/page.css", methods=["GET"])
def transparency_css() -> Response:
    response = Response(page.CSS, mimetype="text/css")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@public.route("/transparency/bundle", methods=["GET"])
def published_bundle() -> Response:
    """The published period's bundle."""
    row = service.latest_published(db())
    if row is None:
        raise NotFoundError("no period is published yet")
    return _bundle_response(row)
