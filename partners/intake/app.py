"""The intake's web application: the page that hashes on the device, the case API, status and withdrawal.

Every response carries a strict Content-Security-Policy (only this origin; images from blob: for the local
previews) and sets no cookie: the app keeps no session, so there is nothing to consent to.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from argon2 import PasswordHasher
from flask import Flask, Response, jsonify, render_template, request
from werkzeug.middleware.proxy_fix import ProxyFix

from partners.client.auth import make_session
from partners.client.config import PartnerConfig
from partners.client.transport import RequestsTransport, Transport
from partners.intake.cases import CaseBook, format_number
from partners.intake.config import IntakeSettings
from partners.intake.errors import (
    CaseNotFoundError,
    HubUnavailableError,
    InvalidHashesError,
    TooManyAttemptsError,
)
from partners.intake.hubclient import HubClient

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
MAX_REQUEST_BYTES = 64 * 1024  # hashes of a case are a few kilobytes; anything larger is not from the page


def hub_transport(settings: IntakeSettings) -> Transport:
    """The production transport: the kit's OAuth client (client_secret_basic) with scope hashes:write."""
    config = PartnerConfig(
        hub_url=settings.hub_url,
        client_id=settings.client_id,
        keyset_sha256=settings.keyset_sha256,
        secret_path=settings.secret_path,
        scope="hashes:write",
    )
    return RequestsTransport(settings.hub_url, make_session(config))


def create_app(
    settings: IntakeSettings,
    transport: Transport | None = None,
    clock: Callable[[], float] = time.time,
    hasher: PasswordHasher | None = None,
) -> Flask:
    """The intake app; tests inject `transport`, `clock` and a cheaper `hasher` (default: argon2id's defaults)."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    if settings.proxy_hops:
        # Look-ups are limited per address: behind a proxy, that is the address the proxy saw.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops)  # type: ignore[method-assign]
    hub = HubClient(transport or hub_transport(settings), settings.collection)
    book = CaseBook(settings, hub, clock, hasher)
    app.extensions["hashfed_intake"] = book

    def page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
        return render_template(template, settings=settings, **context), status

    @app.before_request
    def same_origin_posts() -> tuple[str, int] | None:
        # Another site's form could otherwise post look-ups from a visitor's browser and spend their address's
        # allowance. Browsers say where a request comes from in Sec-Fetch-Site, and older ones in Origin.
        if request.method != "POST":
            return None
        site = request.headers.get("Sec-Fetch-Site")
        origin = request.headers.get("Origin")
        if site is not None and site not in ("same-origin", "none"):
            return "", 403
        if origin is not None and origin != request.host_url.rstrip("/"):
            return "", 403
        return None

    @app.after_request
    def protect(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"  # no referrer to other sites; own POSTs carry Origin
        response.headers["Cache-Control"] = "no-store"
        response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        return response

    @app.get("/")
    def index() -> tuple[str, int]:
        return page("index.html")

    @app.post("/cases")
    def open_case() -> tuple[Response, int]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or set(body) != {"hashes"}:
            return jsonify(message='send {"hashes": [...]} as JSON'), 400
        try:
            case = book.open_case(body["hashes"])
        except InvalidHashesError as e:
            return jsonify(message=str(e)), 422
        except HubUnavailableError:
            return jsonify(message="the service could not reach the hash list; nothing was sent, try again"), 502
        return jsonify(case_number=case.number, pin=case.pin, hashes=case.hashes), 201

    @app.get("/favicon.ico")
    def favicon() -> tuple[str, int]:
        return "", 204  # browsers ask for one; answering keeps their console free of errors

    @app.get("/status")
    def status_form() -> tuple[str, int]:
        return page("status.html")

    @app.post("/status")
    def status() -> tuple[str, int]:
        return _with_case(lambda n, p, a: book.look_up(n, p, a), "case.html")

    @app.post("/withdraw")
    def withdraw() -> tuple[str, int]:
        return _with_case(lambda n, p, a: book.withdraw(n, p, a), "case.html", withdrawn=True)

    def _with_case(action: Callable[[str, str, str], Any], template: str, **context: Any) -> tuple[str, int]:
        number = request.form.get("case_number", "")[:40]
        pin = request.form.get("pin", "")[:40]
        address = request.remote_addr or "unknown"
        try:
            case = action(number, pin, address)
        except CaseNotFoundError:
            return page(
                "status.html",
                404,
                error="We could not find a case with that number and PIN.",
                number=format_number(number),
            )
        except TooManyAttemptsError as e:
            minutes = max(1, (e.retry_after_s + 59) // 60)
            body, status = page(
                "status.html",
                429,
                error=f"Too many tries. Please wait {minutes} minutes.",
                number=format_number(number),
            )
            return body, status
        except HubUnavailableError:
            return page(
                "status.html",
                502,
                error="The service could not reach the hash list. Try again later.",
                number=format_number(number),
            )
        return page(template, case=case, **context)

    @app.errorhandler(413)
    def too_large(_: Exception) -> tuple[Response, int]:
        return jsonify(message="request too large"), 413

    return app


def check_hub(app: Flask, settings: IntakeSettings) -> int:
    """The hub's key set version, walked from the pin (raises `HubUnavailableError`)."""
    book: CaseBook = app.extensions["hashfed_intake"]
    return book.hub.check_keys(settings.keyset_sha256, datetime.now(UTC))
