"""Staff passwords follow NIST SP 800-63B 5.1.1: 12 to 128 characters, and none that a guesser tries early
(common, dictionary, repetitive or sequential) or that names the user, their partner or the hub."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hub.errors import ValidationError
from hub.identity import people
from hub.identity.models import User
from hub.transparency.auditlog import Actor
from hub.transparency.models import AuditEntry
from tests.hub import factories as f

EMAIL = "ana.lopez@example.org"
PARTNER = "trust-board"


@pytest.fixture
def gov(session):
    return f.partner(session, kind="governance", name=PARTNER)


def _written(session) -> tuple[int, int]:
    f.as_system(session)
    return (
        session.scalar(select(func.count()).select_from(User)) or 0,
        session.scalar(select(func.count()).select_from(AuditEntry)) or 0,
    )


REFUSED = {
    "11 characters": ("x8#kd02LmQ!", "at least 12 characters"),
    "129 characters": ("x8#kd02LmQ!z" * 10 + "abcdefghi", "at most 128 characters"),
    "repetitive": ("aaaaaaaaaaaa", "too easy to guess"),
    "common word and digits": ("password1234", "too easy to guess"),
    "keyboard row": ("qwertyuiopas", "too easy to guess"),
    "a sequence": ("abcdefghijklmnop", "too easy to guess"),
    "the email's local part": ("ana.lopez-rules-the-world", "the email address"),
    "the email's local part, other case": ("Ana.Lopez-Rules-The-World", "the email address"),
    "the partner's name": ("our trust-board key 77", "the partner's name"),
    "the hub's name": ("HashFed-console-2031!", "'hashfed'"),
    "NUL": ("x8#kd02LmQ!z\x00tail", "text without NUL"),
    "a lone surrogate": ("x8#kd02LmQ!z\ud800tail", "text without NUL"),
}


@pytest.mark.parametrize(("password", "why"), REFUSED.values(), ids=REFUSED.keys())
def test_a_weak_password_is_a_422_that_writes_nothing(session, gov, password, why):
    before = _written(session)
    with pytest.raises(ValidationError) as e:
        people.create_user(session, gov.id, EMAIL, password, Actor.operator())
    assert e.value.status == 422
    assert why in e.value.message
    assert e.value.errors == {"password": [e.value.message]}
    assert password not in e.value.message
    assert _written(session) == before


ACCEPTED = {
    "a passphrase": "correct horse battery",
    "12 random characters": "x8#kd02LmQ!z",
    "64 characters": "fjord quartz mellow 81 cabinet nimbus — " + "pR7!vX2@kL9#qW4$mN6^tY8&",
    "128 characters": ("fjord quartz mellow 81 cabinet nimbus " * 4)[:128],
    "a short local part inside a word": "banana split forever 42",
}


@pytest.mark.parametrize("password", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_a_strong_password_is_taken(session, gov, password):
    email = "ana@example.org" if "banana" in password else EMAIL
    user = people.create_user(session, gov.id, email, password, Actor.operator())
    assert people.login(session, email, password, user.created_at)[0].id == user.id
