"""People: staff users of governance and regulator partners, their console sessions and personal tokens.

Passwords are hashed with Argon2id (argon2-cffi). A console session is a server-side row keyed by the
SHA-256 of a random cookie value; the cookie is HttpOnly, Secure and SameSite=Strict. API use goes through
personal tokens (bearer, stored as a digest), scoped to what the user's partner kind allows.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import TypeGuard

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from zxcvbn import zxcvbn

from hub import rls
from hub.db import utcnow
from hub.errors import ConflictError, HubError, NotFoundError, ValidationError
from hub.identity.models import KIND_SCOPES, AccessToken, ConsoleSession, PartnerKind, PartnerStatus, User, new_id
from hub.identity.tenants import get_partner
from hub.identity.tokens import new_token_string, store_token, token_digest
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor

# Partner kinds whose people may have accounts; platforms and intake services are machines.
PEOPLE_KINDS = (PartnerKind.GOVERNANCE.value, PartnerKind.REGULATOR.value)
SESSION_TTL = timedelta(hours=8)
PERSONAL_TOKEN_TTL = timedelta(days=90)
# NIST SP 800-63B 5.1.1.2: at least 8 characters (12 here: these accounts decide for every partner), a maximum
# of at least 64, and no password from a blocklist of common, guessable and context-specific values.
MIN_PASSWORD = 12
MAX_PASSWORD = 128
# zxcvbn's score (docs/adr/0004): 3 means more than 10^8 guesses, past any common-password list and the
# repetitive, sequential and keyboard patterns a guesser tries first.
MIN_PASSWORD_SCORE = 3
# The hub's own name, in any case: a context-specific word for every user.
_HUB_WORD = "hashfed"
# Context words shorter than this go to zxcvbn only: refusing any password containing "ana" refuses "banana".
_MIN_CONTEXT_WORD = 4
_hasher = PasswordHasher()
# Verified against when the email is unknown, so a miss costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


COOKIE = "hashfed_session"


class LoginError(HubError):
    """Wrong email or password, a disabled user or a suspended partner (one message for all)."""

    status = 401
    default_message = "login failed"
    # True when the failure was written to the audit log and the request must commit despite the 401.
    audited = False


def _user_actor(user: User) -> Actor:
    return Actor(type="user", partner=user.partner_id, user=user.id)


def is_text(value: object) -> TypeGuard[str]:
    """A string the database and the password hasher can take: no NUL, no lone surrogate (JSON allows both)."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def create_user(session: Session, partner_id: str, email: str, password: str, actor: Actor) -> User:
    """A staff user of a governance or regulator partner; the password is stored as an Argon2id hash."""
    partner = get_partner(session, partner_id)
    if partner.kind not in PEOPLE_KINDS:
        raise ValidationError(f"people belong to governance or regulator partners, not {partner.kind}")
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise ValidationError("a user needs a valid email address")
    check_password(password, email=email, partner_name=partner.name)
    if session.scalars(select(User.id).where(User.email == email)).first() is not None:
        raise ConflictError(f"a user {email!r} exists")
    user = User(id=new_id(), partner_id=partner.id, email=email, password_hash=_hasher.hash(password),
                status="active", created_at=utcnow())
    session.add(user)
    session.flush()
    auditlog.record(session, actor, "user.create", f"user/{user.id}", {"partner": partner.id})
    return user


def _refuse_password(why: str) -> ValidationError:
    return ValidationError(why, errors={"password": [why]})


def check_password(password: object, *, email: str, partner_name: str) -> None:
    """Refuse (422, never echoing the password) what NIST SP 800-63B 5.1.1.2 says a verifier refuses.

    Length 12-128; text a database and the hasher take; nothing containing the email's local part, the
    partner's name or the hub's name; nothing zxcvbn guesses within 10^8 tries (common and breached passwords,
    dictionary words, repeats such as aaaaaaaaaaaa, sequences, keyboard rows, dates). No composition rules.
    """
    if not is_text(password):
        raise _refuse_password("a password is text without NUL or unpaired surrogates")
    if len(password) < MIN_PASSWORD:
        raise _refuse_password(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise _refuse_password(f"a password has at most {MAX_PASSWORD} characters")
    local = email.partition("@")[0].lower()
    lowered = password.lower()
    for word, what in ((local, "the email address"), (partner_name.lower(), "the partner's name"),
                       (_HUB_WORD, f"'{_HUB_WORD}'")):
        if len(word) >= _MIN_CONTEXT_WORD and word in lowered:
            raise _refuse_password(f"a password may not contain {what}")
    context = [w for w in (local, *local.replace("_", ".").replace("-", ".").split("."), partner_name, _HUB_WORD) if w]
    result = zxcvbn(password, user_inputs=context, max_length=MAX_PASSWORD)
    if result["score"] < MIN_PASSWORD_SCORE:
        hint = result["feedback"].get("warning") or "it matches a common password or pattern"
        raise _refuse_password(f"this password is too easy to guess ({hint.rstrip('.').lower()}); try a longer "
                               "passphrase of unrelated words")


def get_user(session: Session, user_id_or_email: str) -> User:
    user = session.get(User, user_id_or_email) or session.scalars(
        select(User).where(User.email == user_id_or_email.strip().lower())
    ).first()
    if user is None:
        raise NotFoundError(f"no user {user_id_or_email!r}")
    return user


def disable_user(session: Session, user_id_or_email: str, actor: Actor) -> User:
    """Disable a user: their console sessions and personal tokens stop working at once."""
    user = get_user(session, user_id_or_email)
    if user.status == "disabled":
        raise ConflictError(f"user {user.email!r} is already disabled")
    now = utcnow()
    user.status = "disabled"
    user.disabled_at = now
    session.execute(
        update(ConsoleSession).where(ConsoleSession.user_id == user.id, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    session.execute(
        update(AccessToken).where(AccessToken.user_id == user.id, AccessToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    session.flush()
    auditlog.record(session, actor, "user.disable", f"user/{user.id}", {"partner": user.partner_id})
    return user


def login(session: Session, email: str, password: str, now: datetime) -> tuple[User, str]:
    """Check a password and open a console session; returns the user and the cookie value (shown once)."""
    rls.set_tenant(session, rls.SYSTEM)  # who the user is decides the tenant
    user = session.scalars(select(User).where(User.email == email.strip().lower())).first()
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        failed = LoginError()
        failed.audited = user is not None and _audit_failed_login(session, user, now)
        rls.set_tenant(session, None)
        raise failed from None
    partner = get_partner(session, user.partner_id) if user else None
    if user is None or user.status != "active" or partner is None or partner.status != PartnerStatus.ACTIVE:
        rls.set_tenant(session, None)
        raise LoginError()
    rls.set_tenant(session, user.partner_id)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    cookie = new_token_string()
    session.add(ConsoleSession(digest=token_digest(cookie), user_id=user.id, partner_id=user.partner_id,
                               created_at=now, expires_at=now + SESSION_TTL))
    session.flush()
    auditlog.record(session, _user_actor(user), "user.login", f"user/{user.id}", now=now)
    return user, cookie


FAILURE_AUDIT_INTERVAL = timedelta(minutes=1)


def _audit_failed_login(session: Session, user: User, now: datetime) -> bool:
    """Audit a wrong password for a known user, at most once a minute per user. True if recorded."""
    if user.failure_logged_at is not None and now - user.failure_logged_at < FAILURE_AUDIT_INTERVAL:
        return False
    user.failure_logged_at = now
    session.flush()
    auditlog.record(session, Actor.system("console"), "user.login_failed", f"user/{user.id}",
                    {"partner": user.partner_id}, now=now)
    return True


def session_user(session: Session, cookie: str | None, now: datetime) -> User | None:
    """The user of a live console session (and its tenant set), or None."""
    if not cookie:
        return None
    rls.set_tenant(session, rls.SYSTEM)
    row = session.get(ConsoleSession, token_digest(cookie))
    user = session.get(User, row.user_id) if row is not None else None
    partner = get_partner(session, user.partner_id) if user is not None else None
    if (row is None or row.revoked_at is not None or row.expires_at <= now or user is None
            or user.status != "active" or partner is None or partner.status != PartnerStatus.ACTIVE):
        rls.set_tenant(session, None)
        return None
    rls.set_tenant(session, user.partner_id)
    return user


def logout(session: Session, cookie: str, now: datetime) -> None:
    row = session.get(ConsoleSession, token_digest(cookie))
    if row is not None and row.revoked_at is None:
        row.revoked_at = now
        session.flush()


def create_personal_token(
    session: Session, user: User, name: str, scopes: list[str] | None, now: datetime
) -> tuple[AccessToken, str]:
    """A bearer token for API use by `user`, within what the user's partner kind allows; shown once."""
    partner = get_partner(session, user.partner_id)
    allowed = KIND_SCOPES[PartnerKind(partner.kind)]
    wanted = set(allowed if scopes is None else scopes)
    refused = sorted(wanted - allowed)
    if refused or not wanted:
        shown = " ".join(refused) or "(none)"
        raise ValidationError(f"scopes not allowed for a {partner.kind} user: {shown}")
    token = new_token_string()
    row = store_token(session, token, partner_id=partner.id, scopes=wanted, user_id=user.id,
                      ttl_s=int(PERSONAL_TOKEN_TTL.total_seconds()), name=name.strip()[:200] or "personal",
                      now=now)
    auditlog.record(session, _user_actor(user), "token.issue", f"user/{user.id}",
                    {"scopes": sorted(wanted), "personal": True, "token": row.digest[:16]}, now=now)
    return row, token


# --- console routes --------------------------------------------------------------------------------------

