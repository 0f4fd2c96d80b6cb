"""`/v1/disputes` and `/v1/cases` for partners; `/v1/governance/...` for staff (scope `governance`, people only)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hub.errors import ForbiddenError, ServiceUnavailableError
from hub.feed import signals
from hub.governance import schemas, service
from hub.governance.service import Staff
from hub.identity.auth import current_principal, require_scope
from hub.identity.models import PartnerKind
from hub.transparency.keys import HubKeys, ensure_hub_secret, serving_keys
from hub.web import Blueprint, db, settings, state

blp = Blueprint("governance", __name__, description="Disputes, cases, and staff review decisions")


def _hub_secret() -> bytes:
    services = state().services
    if "governance_hub_secret" not in services:
        services["governance_hub_secret"] = ensure_hub_secret(settings().keys_path)
    secret: bytes = services["governance_hub_secret"]
    return secret


def _keys() -> HubKeys:
    try:
        return serving_keys(state().services, settings(), db())
    except Exception as e:
        raise ServiceUnavailableError("signing keys are not loaded") from e


def _staff() -> Staff:
    """The staff member behind the request: a person of a governance body (machines do not decide)."""
    principal = current_principal()
    if principal.user_id is None or principal.partner_kind != PartnerKind.GOVERNANCE.value:
        raise ForbiddenError("governance decisions are made by staff of a governance body, with a personal token")
    return Staff(principal.actor(), principal.user_id, principal.partner_id)


# --- partners ------------------------------------------------------------------------------------------


@blp.route("/v1/disputes", methods=["POST"])
@require_scope("reports:write")
@blp.arguments(schemas.DisputeOpenSchema)
@blp.response(201, schemas.DisputeViewSchema, description="dispute opened")
@blp.alt_response(
    200, schema=schemas.DisputeViewSchema, description="a repeat of an earlier request: the first dispute"
)
@blp.alt_response(404, description="no such signal, or one in a collection you do not read")
@blp.alt_response(409, description="the signal is no longer in the feed, or you have an open dispute on it")
@blp.alt_response(422, description="a malformed field, or your id reused with another body")
def open_dispute(args: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Contest a signal of a collection you read; idempotent under your own id."""
    principal = current_principal()
    session = db()
    dispute, created = service.open_dispute(
        session, partner_id=principal.partner_id, body=args, actor=principal.actor()
    )
    _, decisions = service.get_dispute(session, dispute.id, principal.partner_id)
    return schemas.dispute_view(dispute, decisions), 201 if created else 200


@blp.route("/v1/disputes", methods=["GET"])
@require_scope("reports:write")
@blp.arguments(schemas.DisputeListArgsSchema, location="query")
@blp.response(200, schemas.DisputeListSchema)
def list_disputes(args: dict[str, Any]) -> dict[str, Any]:
    """Your disputes, or (`mine=contributed`) the disputes on signals you contributed; newest first."""
    found = service.list_disputes(db(), current_principal().partner_id, mine=args["mine"], status=args.get("status"))
    return {"disputes": [schemas.dispute_view(d) for d in found]}


@blp.route("/v1/disputes/<string:dispute_id>", methods=["GET"])
@require_scope("reports:write")
@blp.response(200, schemas.DisputeViewSchema)
@blp.alt_response(404, description="no dispute you opened or whose signal you contributed")
def get_dispute(dispute_id: str) -> dict[str, Any]:
    """A dispute with its decisions: the outcome reaches the disputing partner and the contributor."""
    dispute, decisions = service.get_dispute(db(), dispute_id, current_principal().partner_id)
    return schemas.dispute_view(dispute, decisions)


@blp.route("/v1/disputes/<string:dispute_id>/answer", methods=["POST"])
@require_scope("reports:write")
@blp.arguments(schemas.AnswerSchema)
@blp.response(200, schemas.DisputeViewSchema)
@blp.alt_response(403, description="only the contributor answers")
@blp.alt_response(404, description="no such dispute")
@blp.alt_response(409, description="answered already, or decided")
def answer_dispute(args: dict[str, Any], dispute_id: str) -> dict[str, Any]:
    """The contributor's one answer to a dispute on its signal."""
    principal = current_principal()
    session = db()
    service.answer_dispute(
        session, dispute_id=dispute_id, partner_id=principal.partner_id, text=args["answer"], actor=principal.actor()
    )
    dispute, decisions = service.get_dispute(session, dispute_id, principal.partner_id)
    return schemas.dispute_view(dispute, decisions)


@blp.route("/v1/cases/<path:ref>", methods=["GET"])
@require_scope("hashes:write")
@blp.response(200, schemas.CaseStatusSchema)
@blp.alt_response(404, description="no claim of yours under this case reference (also once it is withdrawn)")
def case_status(ref: str) -> dict[str, Any]:
    """Where one of your cases' hashes are, and how many platforms have acknowledged the batch publishing them."""
    found = service.case_status(
        db(), partner_id=current_principal().partner_id, case_ref=ref, hub_secret=_hub_secret()
    )
    return {
        "status": found.status,
        "hashes": found.hashes,
        "pending": found.pending,
        "in_feed": found.in_feed,
        "published": [{"collection": c, "seq": seq} for c, seq in found.published],
        "platforms": found.platforms,
    }


@blp.route("/v1/cases/<path:ref>/withdraw", methods=["POST"])
@require_scope("hashes:write")
@blp.response(200, schemas.WithdrawnSchema)
@blp.alt_response(404, description="no claim of yours under this case reference")
def withdraw_case(ref: str) -> dict[str, Any]:
    """Withdraw one of your cases: its claims go, and a hash leaves the feed when no claim is left on it."""
    principal = current_principal()
    done = signals.withdraw_case(
        db(), partner_id=principal.partner_id, case_ref=ref, hub_secret=_hub_secret(), actor=principal.actor()
    )
    return {"audit_seq": done.audit_seq, "claims": done.claims, "removed": len(done.removed)}


# --- staff ---------------------------------------------------------------------------------------------


@blp.route("/v1/governance/queue", methods=["GET"])
@require_scope("governance")
@blp.arguments(schemas.QueueArgsSchema, location="query")
@blp.response(200, schemas.QueueSchema)
@blp.alt_response(403, description="not a staff member of a governance body")
def review_queue(args: dict[str, Any]) -> dict[str, Any]:
    """Disputes waiting for staff, oldest first; filter by status, collection, reason, assignee, age."""
    _staff()
    days = args.get("older_than_days")
    rows = service.queue(
        db(),
        statuses=args.get("status"),
        collection_id=args.get("collection"),
        reason=args.get("reason"),
        assignee_id=args.get("assignee"),
        older_than=None if days is None else timedelta(days=days),
    )
    return {"queue": [schemas.queue_view(r) for r in rows]}


def _staff_view(dispute_id: str) -> dict[str, Any]:
    session = db()
    dispute, decisions = service.staff_dispute(session, dispute_id)
    view = schemas.dispute_view(dispute, decisions)
    view["decisions"] = [schemas.decision_view(d) for d in decisions]
    view["assignee"] = dispute.assignee_id
    view["history"] = [schemas.history_view(e) for e in service.signal_history(session, dispute.signal_id)]
    return view


@blp.route("/v1/governance/disputes/<string:dispute_id>", methods=["GET"])
@require_scope("governance")
@blp.response(200, schemas.StaffDisputeSchema)
@blp.alt_response(404, description="no such dispute")
def staff_dispute(dispute_id: str) -> dict[str, Any]:
    """A dispute with every decision and its signal's history (never the hash beyond type and prefix)."""
    _staff()
    return _staff_view(dispute_id)


@blp.route("/v1/governance/disputes/<string:dispute_id>/assign", methods=["POST"])
@require_scope("governance")
@blp.arguments(schemas.AssignSchema)
@blp.response(200, schemas.StaffDisputeSchema)
def assign_dispute(args: dict[str, Any], dispute_id: str) -> dict[str, Any]:
    """Give a dispute to a staff member."""
    service.assign(db(), dispute_id=dispute_id, assignee_id=args["assignee"], staff=_staff())
    return _staff_view(dispute_id)


@blp.route("/v1/governance/disputes/<string:dispute_id>/decisions", methods=["POST"])
@require_scope("governance")
@blp.arguments(schemas.DecideSchema)
@blp.response(201, schemas.StaffDisputeSchema, description="decided (or proposed, under the four-eyes rule)")
@blp.alt_response(403, description="confirming your own uphold, or not staff")
@blp.alt_response(409, description="the action does not follow from the dispute's status")
def decide_dispute(args: dict[str, Any], dispute_id: str) -> tuple[dict[str, Any], int]:
    """uphold, reject, quarantine, release, or confirm a colleague's uphold; a reason is required."""
    service.decide(
        db(),
        dispute_id=dispute_id,
        action=args["action"],
        reason=args["reason"],
        staff=_staff(),
        four_eyes=settings().four_eyes_uphold,
    )
    return _staff_view(dispute_id), 201


@blp.route("/v1/governance/signals/<string:signal_id>/history", methods=["GET"])
@require_scope("governance")
@blp.response(200, schemas.HistoryEventSchema(many=True))
def signal_history(signal_id: str) -> list[dict[str, Any]]:
    """What happened to a signal: added, reports, flag, disputes, decisions, removal."""
    _staff()
    return [schemas.history_view(e) for e in service.signal_history(db(), signal_id)]


def _partner_status(args: dict[str, Any], partner_id: str, suspend: bool) -> tuple[dict[str, Any], int]:
    decision = service.set_partner_status(
        db(), partner_id=partner_id, suspend=suspend, reason=args["reason"], staff=_staff()
    )
    return schemas.decision_view(decision), 201


@blp.route("/v1/governance/partners/<string:partner_id>/suspend", methods=["POST"])
@require_scope("governance")
@blp.arguments(schemas.ReasonSchema)
@blp.response(201, schemas.DecisionViewSchema)
@blp.alt_response(409, description="already suspended")
def suspend_partner(args: dict[str, Any], partner_id: str) -> tuple[dict[str, Any], int]:
    """Suspend a partner, with a reason: every token of its machines and people is revoked at once."""
    return _partner_status(args, partner_id, True)


@blp.route("/v1/governance/partners/<string:partner_id>/reinstate", methods=["POST"])
@require_scope("governance")
@blp.arguments(schemas.ReasonSchema)
@blp.response(201, schemas.DecisionViewSchema)
@blp.alt_response(409, description="not suspended")
def reinstate_partner(args: dict[str, Any], partner_id: str) -> tuple[dict[str, Any], int]:
    """Reinstate a suspended partner, with a reason (its old tokens stay revoked)."""
    return _partner_status(args, partner_id, False)


@blp.route("/v1/governance/collections/<string:collection_id>/members", methods=["POST"])
@require_scope("governance")
@blp.arguments(schemas.MembershipSchema)
@blp.response(201, schemas.DecisionViewSchema)
@blp.alt_response(409, description="nothing would change")
def membership(args: dict[str, Any], collection_id: str) -> tuple[dict[str, Any], int]:
    """Grant or revoke a partner's read or contribute access to a collection, with a reason."""
    decision = service.set_membership(
        db(),
        collection_id=collection_id,
        partner_id=args["partner"],
        access=args["access"],
        grant=args["grant"],
        reason=args["reason"],
        staff=_staff(),
        hub_name=settings().hub_name,
        signer=_keys().signer("collection"),
    )
    return schemas.decision_view(decision), 201
