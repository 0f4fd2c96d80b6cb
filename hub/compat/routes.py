"""/compat/stopncii/v1: the StopNCII protocol as threatexchange's `StopNCIIAPI` client speaks it.

Not in the OpenAPI document: its shapes are StopNCII's, not the hub's (docs/api.md describes them). A key comes
in `Ocp-Apim-Subscription-Key` or `x-functions-key` (the client sends both); the partner it maps to is the
tenant of the request's transaction, as a bearer token's partner is (hub/identity/auth.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request

from hub import rls
from hub.compat import service
from hub.errors import ForbiddenError
from hub.identity.auth import require_secure_transport
from hub.identity.ratelimit import limiter
from hub.transparency.keys import ensure_hub_secret
from hub.web import db, settings, state

blp = Blueprint("compat", __name__, url_prefix="/compat/stopncii/v1")

KEY_HEADERS = ("Ocp-Apim-Subscription-Key", "x-functions-key")


def _hub_secret() -> bytes:
    """The hub secret for key digests, read once per app."""
    services = state().services
    if "compat_hub_secret" not in services:
        services["compat_hub_secret"] = ensure_hub_secret(settings().keys_path)
    secret: bytes = services["compat_hub_secret"]
    return secret


def _caller(scope: str) -> service.Caller:
    """The key's partner, set as the tenant; 401 for any bad key, 403 for a key without `scope`."""
    require_secure_transport()
    session = db()
    # The lookup runs as SYSTEM: the partner is not known until the key is found.
    rls.set_tenant(session, rls.SYSTEM)
    try:
        caller = service.authenticate(session, _hub_secret(), [request.headers.get(h, "") for h in KEY_HEADERS])
    except service.UnauthorizedError:
        rls.set_tenant(session, None)
        raise
    rls.set_tenant(session, caller.partner_id)
    if scope not in caller.scopes:
        raise ForbiddenError(f"this key does not hold scope {scope}")
    return caller


def _answer(body: dict[str, Any]) -> Response:
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


@blp.get("/FetchHashes")
def fetch_hashes() -> Response:
    caller = _caller(service.FETCH_SCOPE)
    args = request.args
    return _answer(
        service.fetch(
            db(),
            caller,
            start_timestamp=args.get("startTimestamp"),
            page_size=args.get("pageSize"),
            page_token=args.get("nextPageToken"),
        )
    )


@blp.post("/SubmitHashes")
def submit_hashes() -> Response:
    caller = _caller(service.SUBMIT_SCOPE)
    body = request.get_json(silent=True)
    return _answer(service.submit_hashes(db(), caller, body, hub_secret=_hub_secret()))


@blp.post("/SubmitFeedback")
def submit_feedback() -> Response:
    caller = _caller(service.FEEDBACK_SCOPE)
    body = request.get_json(silent=True)
    return _answer(
        service.submit_feedback(
            db(), caller, body, hub_secret=_hub_secret(), flag_threshold=settings().false_positive_flag_threshold
        )
    )


def _presented_key() -> str:
    """The rate limit's key: a digest of the presented key (never the key itself) and the address."""
    presented = "\x00".join(request.headers.get(h, "") for h in KEY_HEADERS)
    return f"apikey:{hashlib.sha256(presented.encode()).hexdigest()[:32]}|addr:{request.remote_addr or 'unknown'}"


def _refused(response: Response) -> bool:
    return response.status_code in (401, 403)


def init_app(app: Flask) -> None:
    """Register the routes with two limits, as the token endpoint has (hub/identity/ratelimit.py).

    Failed authentications count against the address (settings.token_rate_limit): a caller guessing keys is
    stopped. Every request counts against its key and address (settings.token_rate_limit_address), which bounds
    a client's paging without letting one address use up another's quota.
    """
    app.register_blueprint(blp)
    hub_settings = state(app).settings
    lim = limiter(app)
    for name in ("fetch_hashes", "submit_hashes", "submit_feedback"):
        endpoint = f"compat.{name}"
        view: Callable[..., Any] = app.view_functions[endpoint]
        per_key = lim.limit(hub_settings.token_rate_limit_address, key_func=_presented_key, scope="compat-key")
        failures = lim.limit(
            hub_settings.token_rate_limit,
            key_func=lambda: f"addr:{request.remote_addr or 'unknown'}",
            scope="compat-failures",
            deduct_when=_refused,
        )
        app.view_functions[endpoint] = failures(per_key(view))
