"""An Idempotency-Key replay is answered only to a partner that may still do the request: scope and collection
access are checked before a stored answer is returned."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hub.feed.models import Access, IdempotencyKey, PendingChange, Signal
from hub.transparency.models import AuditEntry
from tests.hub import factories as f
from tests.hub import feedkit as kit


def _written(session) -> tuple[int, ...]:
    f.as_system(session)
    return tuple(
        session.scalar(select(func.count()).select_from(m)) for m in (AuditEntry, Signal, PendingChange, IdempotencyKey)
    )


def _revoke(session, keys, c, p, access: Access) -> None:
    kit.grant(session, keys, c, p, access, granted=False)


def _lose_contributor(session, keys, c, owner, intake) -> None:
    _revoke(session, keys, c, intake, Access.CONTRIBUTOR)


def _lose_all_access(session, keys, c, owner, intake) -> None:
    _revoke(session, keys, c, intake, Access.CONTRIBUTOR)
    _revoke(session, keys, c, intake, Access.READER)


@pytest.mark.parametrize(
    ("lose", "status"),
    [(_lose_contributor, 403), (_lose_all_access, 404)],
    ids=["contributor access revoked", "all access revoked"],
)
def test_a_replay_after_the_grant_is_gone_is_refused_and_writes_nothing(client, session, settings, lose, status):
    keys = kit.hub_keys(session, settings)
    owner = kit.partner(session)
    intake = f.partner(session, kind="intake")
    c = kit.collection(session, keys, owner)
    for access in (Access.READER, Access.CONTRIBUTOR):
        kit.grant(session, keys, c, intake, access)
    headers = {**f.auth(f.token(session, intake, ["hashes:write"])), "Idempotency-Key": "k-1"}
    body = {"signals": [{"type": "md5", "value": "ab" * 16}]}
    first = client.post(f"/v1/collections/{c.id}/signals", json=body, headers=headers)
    assert first.status_code == 201, first.get_json()

    lose(session, keys, c, owner, intake)
    before = _written(session)
    again = client.post(f"/v1/collections/{c.id}/signals", json=body, headers=headers)
    assert again.status_code == status, again.get_json()
    assert "Idempotency-Replayed" not in again.headers
    assert again.get_json()["code"] == status and "ids" not in again.get_json()
    assert _written(session) == before


def test_a_replay_with_a_token_without_the_scope_is_refused(client, session, settings):
    keys = kit.hub_keys(session, settings)
    owner = kit.partner(session)
    c = kit.collection(session, keys, owner)
    body = {"signals": [{"type": "md5", "value": "ab" * 16}]}
    writer = {**f.auth(f.token(session, owner, ["hashes:write"])), "Idempotency-Key": "k-1"}
    assert client.post(f"/v1/collections/{c.id}/signals", json=body, headers=writer).status_code == 201
    reader = {**f.auth(f.token(session, owner, ["feed:read"])), "Idempotency-Key": "k-1"}
    before = _written(session)
    again = client.post(f"/v1/collections/{c.id}/signals", json=body, headers=reader)
    assert again.status_code == 403 and again.get_json()["error"] == "insufficient_scope"
    assert _written(session) == before


def test_a_replay_with_the_grant_in_place_is_answered(client, session, settings):
    keys = kit.hub_keys(session, settings)
    owner = kit.partner(session)
    c = kit.collection(session, keys, owner)
    body = {"signals": [{"type": "md5", "value": "ab" * 16}]}
    headers = {**f.auth(f.token(session, owner, ["hashes:write"])), "Idempotency-Key": "k-1"}
    first = client.post(f"/v1/collections/{c.id}/signals", json=body, headers=headers)
    before = _written(session)
    again = client.post(f"/v1/collections/{c.id}/signals", json=body, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotency-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert _written(session) == before
