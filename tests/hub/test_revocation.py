"""Revocation reaches tokens already issued: rotating or revoking a client, suspending its partner.

Through HTTP: a token that worked gets 401 afterwards, `/oauth/introspect` says `active: false`, and
resuming the partner does not bring old tokens back.
"""

from __future__ import annotations

import base64

from sqlalchemy import select

from hub.identity import tenants
from hub.identity.models import AccessToken, PartnerStatus
from hub.identity.tokens import token_digest
from hub.transparency.auditlog import Actor
from hub.transparency.models import AuditEntry
from tests.hub import factories as f


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def _issue(client, c: f.Client) -> str:
    r = client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=_basic(c.client_id, c.secret))
    assert r.status_code == 200, r.json
    return r.json["access_token"]


def _works(client, token: str) -> int:
    return client.get("/v1/collections", headers=f.auth(token)).status_code


def _introspect(client, by: f.Client, token: str) -> dict:
    r = client.post("/oauth/introspect", data={"token": token}, headers=_basic(by.client_id, by.secret))
    assert r.status_code == 200, r.json
    return r.json


def _revoked_at(session, token: str):
    f.as_system(session)
    row = session.get(AccessToken, token_digest(token))
    session.refresh(row)
    return row.revoked_at


def _audited(session, action: str) -> bool:
    f.as_system(session)
    return any(f'"action":"{action}"'.encode() in e for (e,) in session.execute(select(AuditEntry.entry)))


def test_rotating_a_client_revokes_its_tokens(client, session, settings):
    owner = f.partner(session)
    c = f.client(session, owner, scopes=["feed:read"], hub_secret=f.hub_secret(settings))
    sibling = f.client(session, owner, scopes=["feed:read"], hub_secret=f.hub_secret(settings))
    old = _issue(client, c)
    other = _issue(client, sibling)
    assert _works(client, old) == 200
    assert _introspect(client, c, old)["active"] is True

    f.as_system(session)
    rotated = tenants.rotate_client(session, c.client_id, hub_secret=f.hub_secret(settings), actor=Actor.operator())

    assert _works(client, old) == 401
    c.secret = rotated.secret
    assert _introspect(client, c, old) == {"active": False}
    assert _revoked_at(session, old) is not None and _audited(session, "client.rotate")
    # Only the rotated client's tokens: its sibling's still work; and the new secret gets a working token.
    assert _works(client, other) == 200
    assert _works(client, _issue(client, c)) == 200


def test_suspending_a_partner_revokes_its_tokens_for_good(client, session, settings):
    owner = f.partner(session)
    c = f.client(session, owner, scopes=["feed:read"], hub_secret=f.hub_secret(settings))
    old = _issue(client, c)
    assert _works(client, old) == 200

    f.as_system(session)
    tenants.set_partner_status(session, owner.id, PartnerStatus.SUSPENDED, Actor.operator())
    assert _works(client, old) == 401
    f.as_system(session)
    tenants.set_partner_status(session, owner.id, PartnerStatus.ACTIVE, Actor.operator())

    assert _works(client, old) == 401
    assert _introspect(client, c, old) == {"active": False}
    assert _revoked_at(session, old) is not None and _audited(session, "partner.suspend")
    assert _works(client, _issue(client, c)) == 200


def test_suspension_leaves_other_partners_tokens_alone(client, session, settings):
    owner, bystander = f.partner(session), f.partner(session)
    theirs = _issue(client, f.client(session, bystander, scopes=["feed:read"], hub_secret=f.hub_secret(settings)))
    f.as_system(session)
    tenants.set_partner_status(session, owner.id, PartnerStatus.SUSPENDED, Actor.operator())
    assert _works(client, theirs) == 200


def test_revoking_a_client_revokes_its_tokens(client, session, settings):
    owner = f.partner(session)
    c = f.client(session, owner, scopes=["feed:read"], hub_secret=f.hub_secret(settings))
    sibling = f.client(session, owner, scopes=["feed:read"], hub_secret=f.hub_secret(settings))
    old = _issue(client, c)

    f.as_system(session)
    tenants.revoke_client(session, c.client_id, Actor.operator())

    assert _works(client, old) == 401
    # Its partner's other client asks: the token is not active.
    assert _introspect(client, sibling, old) == {"active": False}
    assert _revoked_at(session, old) is not None and _audited(session, "client.revoke")
