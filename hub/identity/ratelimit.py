"""Rate limits (Flask-Limiter) on the OAuth endpoints (per client and address, and per address) and on
console logins (per login name, and per address).

Counters live in process memory on the embedded default (one process) and in Redis (settings.redis_url)
when several processes serve; otherwise each replica would count on its own. A refused request is a 429
with `Retry-After`.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, request
from flask_limiter import Limiter

from hub.web import state


def _address() -> str:
    # After ProxyFix (settings.proxy_fix_hops) this is the client's address, not the proxy's.
    return request.remote_addr or "unknown"


def _per_client(claimed_client_id: Callable[[], str | None]) -> Callable[[], str]:
    """The limit key of a token request: the client it claims (hub/identity/oauth.py reads it) and its address."""

    def key() -> str:
        claimed = claimed_client_id()  # None unless it could be a client id
        if claimed is None:
            return f"addr:{_address()}"
        # Per client and address: anyone can claim a client id, so failures from another address must not use
        # up the real client's quota (a lock-out); the per-address limit still bounds each caller.
        return f"client:{claimed}|addr:{_address()}"

    return key


def limiter(app: Flask) -> Limiter:
    """The app's Limiter, created on first use with the settings' storage."""
    hub = state(app)
    existing = hub.services.get("limiter")
    if existing is not None:
        return existing
    settings = hub.settings
    created = Limiter(
        key_func=_address,
        app=app,
        storage_uri=settings.redis_url or "memory://",
        strategy="fixed-window",
        headers_enabled=True,
        default_limits=[],
        # Counting must not become a way to take the token endpoint down with the storage.
        swallow_errors=True,
    )
    hub.services["limiter"] = created
    return created


def _limit_twice(app: Flask, endpoint: str, per_caller: tuple[str, Callable[[], str], str], per_address: str) -> None:
    """Wrap `endpoint` in two limits: one per caller (client, login name) and one per client address."""
    view = app.view_functions[endpoint]
    lim = limiter(app)
    rate, key_func, scope = per_caller
    by_caller = lim.limit(rate, key_func=key_func, scope=f"{scope}-caller")
    by_address = lim.limit(per_address, key_func=_address, scope=f"{scope}-address")
    app.view_functions[endpoint] = by_address(by_caller(view))  # type: ignore[assignment]


def limit_oauth_endpoint(
    app: Flask, endpoint: str, name: str, claimed_client_id: Callable[[], str | None]
) -> None:
    """Limit `endpoint` per (claimed client, address) and per address (settings.token_rate_limit[_address]).

    Each endpoint (`name`: token, introspect, revoke) counts on its own. `claimed_client_id` reads the client
    a request claims; it is passed in so that this module needs nothing of the authorization server.
    """
    settings = state(app).settings
    key = _per_client(claimed_client_id)
    _limit_twice(app, endpoint, (settings.token_rate_limit, key, name), settings.token_rate_limit_address)


def _login_name() -> str:
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested too deep to parse: the login view answers 400
        body = None
    email = body.get("email") if isinstance(body, dict) else None
    return f"login:{email.strip().lower()[:320]}" if isinstance(email, str) else f"addr:{_address()}"


def limit_login_endpoint(app: Flask, endpoint: str) -> None:
    """Limit console logins per login name and per address (settings.login_rate_limit): no password guessing."""
    settings = state(app).settings
    _limit_twice(app, endpoint, (settings.login_rate_limit, _login_name, "login"), settings.login_rate_limit_address)
