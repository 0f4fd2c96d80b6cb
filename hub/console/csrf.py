"""CSRF tokens for the console's forms: an HMAC, under a key derived from the hub secret, of the session.

A signed-in browser's token is bound to its session cookie (a new sign-in gets new tokens); the sign-in form's
token is bound to a random pre-session cookie, so a cross-site page cannot sign a victim in under its own
account either. Each console POST must carry the token in the form field `csrf_token` (or the header
`X-CSRF-Token`); a request without it is refused before its view runs. The cookies are HttpOnly and
SameSite=Strict as well, but a token is what holds when a browser or a sibling site bends SameSite.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import request

from hub.errors import BadRequestError
from hub.transparency.keys import ensure_hub_secret
from hub.web import state

PRE_SESSION_COOKIE = "hashfed_console_csrf"
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
_KEY = "console_csrf_key"  # where the derived key is kept in the app's services


class CsrfError(BadRequestError):
    """A console form came without a valid CSRF token."""

    default_message = "this form has expired or did not come from the console; reload the page and try again"


def _key() -> bytes:
    hub = state()
    key = hub.services.get(_KEY)
    if key is None:
        secret = ensure_hub_secret(hub.settings.keys_path)
        key = hmac.new(secret, b"hashfed/console-csrf/v1", hashlib.sha256).digest()
        hub.services[_KEY] = key
    return key


def new_pre_session_value() -> str:
    return secrets.token_urlsafe(32)


def token(session_cookie: str | None, pre_session_cookie: str | None) -> str:
    """The token forms carry: bound to the session when there is one, otherwise to the pre-session cookie."""
    if session_cookie:
        basis = b"session\x00" + session_cookie.encode()
    elif pre_session_cookie:
        basis = b"pre\x00" + pre_session_cookie.encode()
    else:
        return ""
    return hmac.new(_key(), basis, hashlib.sha256).hexdigest()


def check(session_cookie: str | None) -> None:
    """Refuse this POST unless it carries the token of its session (or of its pre-session cookie)."""
    expected = token(session_cookie, request.cookies.get(PRE_SESSION_COOKIE))
    sent = request.form.get(FIELD) or request.headers.get(HEADER) or ""
    if not expected or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise CsrfError()
