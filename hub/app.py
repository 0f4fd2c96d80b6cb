"""The application factory: it only wires settings, the engine, the API, blueprints and error handlers."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, request
from flask_smorest import Api
from flask_smorest.error_handler import ErrorSchema
from marshmallow import fields
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException

from hub.compat import routes as compat_routes
from hub.config import Settings
from hub.console import routes as console_routes
from hub.db import make_engine, make_session_factory
from hub.errors import HubError
from hub.exports import routes as exports_routes
from hub.feed import routes as feed_routes
from hub.governance import routes as governance_routes
from hub.identity import routes as identity_routes
from hub.matching import routes as matching_routes
from hub.ops import apidocs, health, metrics
from hub.proxies import TrustedProxies, parse_networks
from hub.reports import routes as reports_routes
from hub.transparency import routes as transparency_routes
from hub.web import MAX_BODY_BYTES, HubRequest, HubState, discard_session, finish_session, refuse_hostile_input
from hub.webhooks import routes as webhooks_routes

log = logging.getLogger(__name__)


class HubErrorSchema(ErrorSchema):
    """The error body as the hub sends it: flask-smorest's, plus RFC 6749/6750's fields on OAuth errors."""

    error = fields.String(metadata={"description": "OAuth error code (RFC 6749 5.2, RFC 6750 3.1)"})
    error_description = fields.String(metadata={"description": "OAuth error description"})


class HubApi(Api):
    """flask-smorest's Api with one error body for every error, keeping the headers an exception carries."""

    ERROR_SCHEMA = HubErrorSchema

    def handle_http_exception(self, error: HTTPException) -> tuple[dict[str, Any], int, dict[str, str]]:
        payload, code, headers = super().handle_http_exception(error)
        # werkzeug exceptions carry headers such as Allow (405) and WWW-Authenticate (401).
        merged = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        merged.update(headers or {})
        # OAuth errors (hub.identity.auth.OAuthHTTPError) keep their RFC 6749 `error` and `error_description` too.
        payload.update(getattr(error, "oauth_body", {}))
        if "message" not in payload and code != 500:
            payload["message"] = error.description
        elif code == 500:
            payload["message"] = "internal error"
        return payload, code, merged


def handle_hub_error(error: HubError) -> tuple[dict[str, Any], int, dict[str, str]]:
    if error.status >= 500:
        log.error("hub error: %s", error.message)
    payload: dict[str, Any] = {
        "code": error.status,
        "status": _STATUS_NAMES.get(error.status, "Error"),
        "message": error.message if error.status < 500 else "service error",
    }
    if error.errors is not None:
        payload["errors"] = error.errors
    return payload, error.status, error.headers


_STATUS_NAMES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Request Entity Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


# Every response: nothing may frame, sniff or script it unless its page sets its own policy (/docs does), and
# no referrer leaves the hub. Over HTTPS, browsers are told to keep to HTTPS.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.scheme == "https":
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    session_factory: sessionmaker[Session] | None = None,
) -> Flask:
    """Build the hub's WSGI app. Tests pass an engine or session factory bound to their transaction."""
    settings = settings or Settings.from_env()
    engine = engine or make_engine(settings.database_url)
    app = Flask("hub")
    app.request_class = HubRequest  # JSON bodies are read strictly (hub.web.loads_request_json)
    # authlib logs every issued token at DEBUG ("Issue token ..."): tokens must never reach a log, whatever the
    # hub's log level (tests/hub/test_log_hygiene.py).
    logging.getLogger("authlib").setLevel(max(logging.INFO, logging.getLogger("authlib").level))
    app.config.update(
        API_TITLE="hashfed hub",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
    )
    app.extensions["hashfed"] = HubState(
        settings=settings,
        engine=engine,
        session_factory=session_factory or make_session_factory(engine),
        services={},
    )
    # Forwarded headers count only from the configured proxies; from anyone else they are dropped.
    app.wsgi_app = TrustedProxies(  # type: ignore[method-assign]
        app.wsgi_app, parse_networks(settings.trusted_proxies), settings.proxy_fix_hops or 1
    )

    # First of all before-request hooks (the rate limiter's key function reads login bodies too).
    app.before_request(refuse_hostile_input)
    api = HubApi(app)
    app.register_error_handler(HubError, handle_hub_error)
    api.register_blueprint(health.blp)
    api.register_blueprint(transparency_routes.blp)
    identity_routes.init_app(app, api)  # OAuth and console routes, their rate limits, the security scheme
    api.register_blueprint(feed_routes.blp)
    metrics.init_app(app, app.extensions["hashfed"].session_factory)
    api.register_blueprint(reports_routes.blp)
    api.register_blueprint(webhooks_routes.blp)
    api.register_blueprint(matching_routes.blp)
    api.register_blueprint(exports_routes.blp)
    app.register_blueprint(exports_routes.public)  # /transparency: public HTML, not in the API document
    api.register_blueprint(governance_routes.blp)
    apidocs.init_app(app)  # /docs: flask-smorest's own page has an inline script
    console_routes.init_app(app)  # /console/: the staff console's pages (after identity: it shares its limiter)
    compat_routes.init_app(app)  # /compat/stopncii/v1: StopNCII's protocol, not in the API document

    @app.after_request
    def _commit_or_rollback(response: Response) -> Response:
        finish_session(response.status_code)
        return response

    app.after_request(security_headers)

    @app.teardown_request
    def _close(_exc: BaseException | None) -> None:
        discard_session()

    return app
