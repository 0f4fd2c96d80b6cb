"""`/v1/reports`: partners report matches and what they did about them (scope `reports:write`, own only)."""

from __future__ import annotations

from typing import Any

from hub.identity.auth import current_principal, require_scope
from hub.reports import schemas, service
from hub.transparency.keys import ensure_hub_secret
from hub.web import Blueprint, db, settings, state

blp = Blueprint("reports", __name__, description="Match and takedown reports with their outcome history")

_SCOPE = "reports:write"


def _hub_secret() -> bytes:
    """The hub secret for content reference digests, read once per app."""
    services = state().services
    if "reports_hub_secret" not in services:
        services["reports_hub_secret"] = ensure_hub_secret(settings().keys_path)
    secret: bytes = services["reports_hub_secret"]
    return secret


@blp.route("/v1/reports", methods=["POST"])
@require_scope(_SCOPE)
@blp.arguments(schemas.ReportBatchSchema)
@blp.response(201, schemas.ReportsSubmittedSchema, description="reports recorded (some may be replays)")
@blp.alt_response(200, schema=schemas.ReportsSubmittedSchema, description="every report was a replay")
@blp.alt_response(400, description='the body is not {"reports": [...]}')
@blp.alt_response(413, description="more than 1,000 reports")
@blp.alt_response(422, description="an item is refused (errors.reports names each by index); nothing written")
def submit_reports(args: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Report up to 1,000 matches; each is idempotent under the partner's own report id."""
    principal = current_principal()
    done = service.submit(
        db(),
        partner_id=principal.partner_id,
        items=args["reports"],
        actor=principal.actor(),
        hub_secret=_hub_secret(),
        flag_threshold=settings().false_positive_flag_threshold,
    )
    result = {"audit_seq": done.audit_seq, "created": done.created, "replayed": done.replayed,
              "reports": done.reports}
    return result, 201 if done.created else 200


@blp.route("/v1/reports", methods=["GET"])
@require_scope(_SCOPE)
@blp.arguments(schemas.ReportListArgsSchema, location="query")
@blp.response(200, schemas.ReportPageSchema)
@blp.alt_response(400, description="a cursor this API did not return")
@blp.alt_response(422, description="a malformed filter")
def list_reports(args: dict[str, Any]) -> dict[str, Any]:
    """The partner's own reports in the order received; filter by matched_at, outcome, collection."""
    partner_id = current_principal().partner_id
    ref = args.get("content_ref")
    ref_digest = None if ref is None else service.content_ref_digest(_hub_secret(), partner_id, ref)
    page = service.list_reports(
        db(),
        partner_id,
        since=args.get("since"),
        until=args.get("until"),
        outcome=args.get("outcome"),
        collection_id=args.get("collection"),
        content_ref_digest=ref_digest,
        cursor=args.get("cursor"),
        limit=args["limit"],
    )
    return {"reports": [schemas.report_view(r) for r in page.reports], "next": page.next_cursor}


@blp.route("/v1/reports/<string:report_id>", methods=["GET"])
@require_scope(_SCOPE)
@blp.response(200, schemas.ReportSchema)
@blp.alt_response(404, description="no such report of this partner")
def get_report(report_id: str) -> dict[str, Any]:
    """One of the partner's reports with its whole outcome history."""
    report, history = service.get(db(), current_principal().partner_id, report_id)
    return schemas.report_view(report, history)


@blp.route("/v1/reports/<string:report_id>", methods=["PATCH"])
@require_scope(_SCOPE)
@blp.arguments(schemas.OutcomeSchema)
@blp.response(200, schemas.ReportSchema, description="the report with its history (unchanged if a repeat)")
@blp.alt_response(404, description="no such report of this partner")
@blp.alt_response(422, description="a malformed field (errors.json names it), or a time out of order")
def change_outcome(args: dict[str, Any], report_id: str) -> dict[str, Any]:
    """Record a new outcome: the next version of the report's history, with its own audit entry."""
    principal = current_principal()
    session = db()
    service.update_outcome(
        session,
        partner_id=principal.partner_id,
        report_id=report_id,
        body=args,
        actor=principal.actor(),
        flag_threshold=settings().false_positive_flag_threshold,
    )
    report, history = service.get(session, principal.partner_id, report_id)
    return schemas.report_view(report, history)
