"""The staff console's pages (`/console/...`): server-rendered HTML behind the staff sign-in.

Governance staff see every page, decide disputes and create exports; regulator staff see the dashboard, the
audit browser and the exports only, and change nothing here but their own session. Every page carries a strict
Content-Security-Policy (the hub's own script, style and images only), every POST a CSRF token
(hub/console/csrf.py). The JSON
login, logout and token endpoints stay in hub/identity/routes.py, unchanged: they take JSON bodies only,
which no cross-site form can send, and need no token.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from flask import Blueprint, Flask, Response, g, jsonify, redirect, render_template, request, send_file, url_for
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from audit.exports import parse_period
from hub import rls
from hub.console import csrf, service
from hub.console.chart import OUTCOMES, outcome_label, reports_chart
from hub.db import utcnow
from hub.errors import BadRequestError, ConflictError, ForbiddenError, HubError, ValidationError
from hub.exports import service as exports
from hub.governance import service as governance
from hub.governance.models import DisputeReason, DisputeStatus
from hub.governance.service import Staff
from hub.identity import ratelimit
from hub.identity.auth import require_secure_transport
from hub.identity.models import PartnerKind
from hub.identity.people import COOKIE, SESSION_TTL, LoginError, is_text, login, logout, session_user
from hub.identity.tenants import get_partner
from hub.transparency.auditlog import Actor
from hub.transparency.keys import serving_keys
from hub.upstreams import service as upstreams
from hub.web import MAX_BIGINT, commit_despite_error, db, settings, state

F = TypeVar("F", bound=Callable[..., Any])

# What the console's pages may load: their own origin's script, style and images, nothing inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

bp = Blueprint(
    "staff_console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


# --- who is asking -----------------------------------------------------------------------------------------


class Viewer:
    """The signed-in staff user and what their partner's kind lets them see."""

    def __init__(self, user_id: str, email: str, partner_name: str, kind: str) -> None:
        self.user_id, self.email, self.partner_name, self.kind = user_id, email, partner_name, kind

    @property
    def governance(self) -> bool:
        return self.kind == PartnerKind.GOVERNANCE.value


def viewer() -> Viewer | None:
    return cast(Viewer | None, g.get("console_viewer"))


@bp.before_request
def _before() -> Response | None:
    if request.endpoint == "staff_console.static":
        return None
    require_secure_transport()
    cookie = request.cookies.get(COOKIE)
    user = session_user(db(), cookie, utcnow())
    g.console_viewer = None
    if user is not None:
        partner = get_partner(db(), user.partner_id)
        g.console_viewer = Viewer(user.id, user.email, partner.name, partner.kind)
        g.console_partner_id = partner.id
        g.console_session = cookie
    if request.method == "POST":
        csrf.check(cookie if user is not None else None)
    return None


def _sign_in_redirect() -> Response:
    return cast(Response, redirect(url_for("staff_console.sign_in"), code=303))


def page(*, regulator: bool) -> Callable[[F], F]:
    """A console view: a signed-in user is required, and a regulator's only if `regulator`. The view reads
    every partner's rows (RLS tenant SYSTEM): staff oversee them all, and the console writes nothing."""

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            who = viewer()
            if who is None:
                if request.endpoint in _JSON_ENDPOINTS:
                    raise LoginError("sign in to the console first")
                return _sign_in_redirect()
            if not who.governance and not regulator:
                raise ForbiddenError("this page is for governance staff")
            rls.set_tenant(db(), rls.SYSTEM)
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return wrap


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint != "staff_console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_filter("when")
def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"


@bp.app_template_filter("outcome")
def _outcome(value: str) -> str:
    return outcome_label(value)


@bp.context_processor
def _context() -> dict[str, Any]:
    def csrf_token() -> str:
        session_cookie = g.get("console_session") if viewer() is not None else None
        return csrf.token(session_cookie, g.get("console_pre_session") or request.cookies.get(csrf.PRE_SESSION_COOKIE))

    return {"viewer": viewer(), "csrf_token": csrf_token, "csrf_field": csrf.FIELD}


# --- errors ------------------------------------------------------------------------------------------------


_JSON_ENDPOINTS = {"staff_console.audit_proof"}


def _error(status: int, message: str, headers: Any = None) -> Response:
    if request.endpoint in _JSON_ENDPOINTS:
        response = jsonify({"code": status, "status": "Error", "message": message})
    else:
        response = Response(render_template("console/error.html", status=status, message=message),
                            mimetype="text/html")
    response.status_code = status
    for name, value in headers or []:
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


@bp.errorhandler(HubError)
def _hub_error(error: HubError) -> Response:
    message = error.message if error.status < 500 else "service error"
    return _error(error.status, message, list(error.headers.items()))


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    return _error(error.code or 500, error.description or "error", error.get_headers())


# --- sign in and out ---------------------------------------------------------------------------------------


def _sign_in_page(status: int = 200, problem: str | None = None, email: str = "") -> Response:
    pre = request.cookies.get(csrf.PRE_SESSION_COOKIE)
    fresh = not pre
    if fresh:
        pre = csrf.new_pre_session_value()
        g.console_pre_session = pre
    response = Response(render_template("console/sign_in.html", problem=problem, email=email),
                        status=status, mimetype="text/html")
    if fresh:
        response.set_cookie(csrf.PRE_SESSION_COOKIE, pre or "", httponly=True, secure=True, samesite="Strict",
                            path="/console")
    return response


@bp.get("/sign-in")
def sign_in() -> Response:
    """The sign-in form; a signed-in user goes to the dashboard."""
    if viewer() is not None:
        return cast(Response, redirect(url_for("staff_console.dashboard"), code=303))
    return _sign_in_page()


@bp.post("/sign-in")
def sign_in_submit() -> Response:
    """Check the password (hub.identity.people.login), open a session, go to the dashboard."""
    email, password = request.form.get("email"), request.form.get("password")
    if not is_text(email) or not is_text(password) or not email.strip() or not password:
        return _sign_in_page(400, "Enter your email address and password.", email if is_text(email) else "")
    try:
        _user, cookie = login(db(), email, password, utcnow())
    except LoginError as e:
        if e.audited:
            commit_despite_error()
        return _sign_in_page(401, "Sign-in failed: wrong email or password, or the account is disabled.", email)
    response = cast(Response, redirect(url_for("staff_console.dashboard"), code=303))
    response.set_cookie(COOKIE, cookie, max_age=int(SESSION_TTL.total_seconds()), httponly=True, secure=True,
                        samesite="Strict", path="/")
    return response


@bp.post("/sign-out")
def sign_out() -> Response:
    """Close the session (its row is revoked, the cookie cleared)."""
    cookie = g.get("console_session")
    if cookie:
        rls.set_tenant(db(), rls.SYSTEM)
        logout(db(), cookie, utcnow())
    response = _sign_in_redirect()
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return response


# --- pages -------------------------------------------------------------------------------------------------


@bp.get("/")
@page(regulator=True)
def dashboard() -> str:
    now = utcnow()
    weeks = service.reports_by_week(db(), now)
    return render_template(
        "console/dashboard.html",
        signals=service.active_signals(db()),
        weeks=weeks,
        outcomes=OUTCOMES,
        chart=Markup(reports_chart(weeks)),  # noqa: S704  (built from escaped parts in hub/console/chart.py)
        disputes=service.open_disputes_by_age(db(), now),
        partners=service.partners(db()),
        slugs=service.collection_slugs(db()),
    )


@bp.get("/partners")
@page(regulator=False)
def partners() -> str:
    return render_template("console/partners.html", partners=service.partners(db()))


@bp.get("/partners/<partner_id>")
@page(regulator=False)
def partner(partner_id: str) -> str:
    return render_template("console/partner.html", p=service.partner(db(), partner_id),
                           slugs=service.collection_slugs(db()))


@bp.get("/collections")
@page(regulator=False)
def collections() -> str:
    return render_template("console/collections.html", collections=service.collections(db()))


@bp.get("/collections/<collection_id>")
@page(regulator=False)
def collection(collection_id: str) -> str:
    return render_template("console/collection.html", c=service.collection(db(), collection_id))


@bp.get("/upstreams")
@page(regulator=False)
def upstreams_page() -> str:
    rows = [upstreams.describe(u) | {"slug": c} for u, c in _with_slugs(upstreams.list_upstreams(db()))]
    return render_template("console/upstreams.html", upstreams=rows)


def _with_slugs(rows: list[Any]) -> list[tuple[Any, str]]:
    slugs = service.collection_slugs(db())
    return [(u, slugs.get(u.collection_id, u.collection_id)) for u in rows]


def _int_arg(name: str, *, required: bool = False) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        if required:
            raise BadRequestError(f"{name} is required")
        return None
    if not raw.isdigit() or int(raw) > MAX_BIGINT:
        raise BadRequestError(f"{name} is a whole number from 0")
    return int(raw)


@bp.get("/audit")
@page(regulator=True)
def audit() -> str:
    """Audit entries, newest first, and the latest signed checkpoint that the browser checks proofs against."""
    return render_template(
        "console/audit.html",
        page=service.audit_page(db(), _int_arg("before")),
        checkpoint=service.latest_checkpoint(db(), settings().hub_name),
    )


@bp.get("/audit/proof")
@page(regulator=True)
def audit_proof() -> Response:
    """The inclusion proof of entry `seq` at tree size `size`, as GET /v1/audit/proofs/inclusion gives it,
    for a console session (the API needs a bearer token)."""
    seq = cast(int, _int_arg("seq", required=True))
    size = cast(int, _int_arg("size", required=True))
    if size < 1:
        raise BadRequestError("size is at least 1")
    return jsonify(service.inclusion_proof(db(), seq, size))


# --- review: the queue and disputes (hub/governance/service.py) ----------------------------------------------


def _staff() -> Staff:
    who = viewer()
    if who is None or not who.governance:  # `page(regulator=False)` has checked; decisions check again
        raise ForbiddenError("decisions are made by staff of a governance body")
    partner_id = g.console_partner_id
    return Staff(Actor(type="user", partner=partner_id, user=who.user_id), who.user_id, partner_id)


_QUEUE_STATUSES = [s.value for s in governance.QUEUE_STATUSES]


@bp.get("/queue")
@page(regulator=False)
def queue() -> str:
    """Disputes waiting for staff, oldest first, filtered by status, collection, reason and age."""
    status = request.args.get("status") or ""
    if status and status not in _QUEUE_STATUSES:
        raise BadRequestError("unknown status")
    collection_id = request.args.get("collection") or None
    reason = request.args.get("reason") or None
    if reason is not None and reason not in _REASONS:
        raise BadRequestError("unknown reason")
    days = _int_arg("older_than_days")
    rows = governance.queue(
        db(), statuses=[status] if status else None, collection_id=collection_id, reason=reason,
        older_than=None if days is None else timedelta(days=days), now=utcnow(),
    )
    return render_template(
        "console/queue.html", rows=rows, statuses=_QUEUE_STATUSES, reasons=_REASONS,
        collections=service.collection_slugs(db()), users=service.staff_users(db()),
        chosen={"status": status, "collection": collection_id or "", "reason": reason or "",
                "older_than_days": "" if days is None else str(days)},
    )


_REASONS = [r.value for r in DisputeReason]
# What a decide form offers in each status (the service refuses anything else with a 409 all the same).
_ACTIONS = {
    DisputeStatus.OPEN.value: ["reject", "quarantine", "uphold"],
    DisputeStatus.QUARANTINED.value: ["release", "uphold"],
    DisputeStatus.AWAITING_CONFIRMATION.value: ["confirm", "reject"],
}


def _dispute_page(dispute_id: str, *, status: int = 200, problem: str | None = None, reason: str = "") -> Response:
    dispute, decisions = governance.staff_dispute(db(), dispute_id)
    kind, prefix = service.signal_label(db(), dispute.signal_id)
    html = render_template(
        "console/dispute.html", d=dispute, decisions=decisions, kind=kind, prefix=prefix,
        history=governance.signal_history(db(), dispute.signal_id), actions=_ACTIONS.get(dispute.status, []),
        partners=service.partner_names(db()), collections=service.collection_slugs(db()),
        users=service.staff_users(db()), problem=problem, reason=reason, done=request.args.get("done"),
        four_eyes=settings().four_eyes_uphold,
    )
    return Response(html, status=status, mimetype="text/html")


@bp.get("/disputes/<dispute_id>")
@page(regulator=False)
def dispute(dispute_id: str) -> Response:
    """A dispute, its decisions and its signal's history (the hash by type and 8-digit prefix only)."""
    return _dispute_page(dispute_id)


@bp.post("/disputes/<dispute_id>/decide")
@page(regulator=False)
def decide(dispute_id: str) -> Response:
    """Record a decision (hub/governance/service.py decide); a refusal shows the page again and writes nothing."""
    action, reason = request.form.get("action", ""), request.form.get("reason", "")
    try:
        governance.decide(db(), dispute_id=dispute_id, action=action, reason=reason, staff=_staff(),
                          four_eyes=settings().four_eyes_uphold, now=utcnow())
    except (ValidationError, ConflictError, ForbiddenError) as e:
        db().rollback()  # nothing of the refused decision stays; the page below reads afresh
        rls.set_tenant(db(), rls.SYSTEM)
        return _dispute_page(dispute_id, status=e.status, problem=e.message, reason=reason)
    return cast(Response, redirect(url_for("staff_console.dispute", dispute_id=dispute_id, done=action), code=303))


@bp.post("/disputes/<dispute_id>/assign")
@page(regulator=False)
def assign(dispute_id: str) -> Response:
    """Take a dispute: assign it to the signed-in staff member."""
    staff = _staff()
    try:
        governance.assign(db(), dispute_id=dispute_id, assignee_id=cast(str, staff.user_id), staff=staff,
                          now=utcnow())
    except (ValidationError, ConflictError) as e:
        db().rollback()
        rls.set_tenant(db(), rls.SYSTEM)
        return _dispute_page(dispute_id, status=e.status, problem=e.message)
    return cast(Response, redirect(url_for("staff_console.dispute", dispute_id=dispute_id, done="assign"), code=303))


# --- exports (hub/exports/service.py, as /v1/exports) -----------------------------------------------------------


def _exports_page(*, status: int = 200, problem: str | None = None, period: str = "") -> Response:
    html = render_template("console/exports.html", exports=exports.list_exports(db()), problem=problem,
                           period=period, done=request.args.get("done"))
    return Response(html, status=status, mimetype="text/html")


@bp.get("/exports")
@page(regulator=True)
def exports_list() -> Response:
    """The newest 100 exports, as GET /v1/exports lists them, each with a link to its bundle."""
    return _exports_page()


@bp.get("/exports/<export_id>/bundle")
@page(regulator=True)
def export_bundle(export_id: str) -> Response:
    """The bundle, written again by the exports service and checked against its listed SHA-256 (409 if not)."""
    row = exports.get(db(), export_id)
    out = tempfile.TemporaryFile()
    exports.write(db(), serving_keys(state().services, settings(), db()), row, out)
    response = send_file(
        out, mimetype="application/zip", as_attachment=True,
        download_name=f"hashfed-export-{row.period_label.replace('/', '_')}-{row.id[:8]}.zip",
    )
    response.headers["Digest"] = f"sha-256={row.bundle_sha256}"
    return response


@bp.post("/exports")
@page(regulator=False)
def export_create() -> Response:
    """Create an export of a period (the service call of POST /v1/exports); a refusal writes nothing."""
    who, raw = _staff(), request.form.get("period", "")
    try:
        if len(raw) > 16:  # as POST /v1/exports: a label is at most 16 characters
            raise ValueError("a period is a quarter (2026-Q3) or a month (2026-07)")
        period = parse_period(raw.strip() or None, None, None)
        row = exports.create(db(), serving_keys(state().services, settings(), db()), period, actor=who.actor,
                             partner_id=who.partner_id, threshold=settings().export_min_cell, now=utcnow())
    except ValueError as e:
        return _exports_page(status=422, problem=str(e), period=raw)
    except ConflictError as e:
        db().rollback()  # nothing of the refused export stays; the page below reads afresh
        rls.set_tenant(db(), rls.SYSTEM)
        return _exports_page(status=e.status, problem=e.message, period=raw)
    return cast(Response, redirect(url_for("staff_console.exports_list", done=row.period_label), code=303))


def init_app(app: Flask) -> None:
    """Register the console; its sign-in form is limited per login name and per address with the JSON login's
    settings (flask-limiter counts each endpoint on its own)."""
    app.register_blueprint(bp)
    hub_settings = state(app).settings
    lim = ratelimit.limiter(app)
    endpoint = "staff_console.sign_in_submit"
    by_name = lim.limit(hub_settings.login_rate_limit, key_func=_form_login_name, scope="login-caller")
    by_address = lim.limit(hub_settings.login_rate_limit_address, key_func=_address, scope="login-address")
    app.view_functions[endpoint] = by_address(by_name(app.view_functions[endpoint]))  # type: ignore[assignment]


def _address() -> str:
    return request.remote_addr or "unknown"


def _form_login_name() -> str:
    email = request.form.get("email")
    return f"login:{email.strip().lower()[:320]}" if isinstance(email, str) else f"addr:{_address()}"
