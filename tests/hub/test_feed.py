"""Feed and submission routes: scopes, readers vs others (404), bad input writes nothing, caching."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hub.feed.models import Signal
from hub.transparency.models import AuditEntry
from tests.hub import factories
from tests.hub import feedkit as kit


@pytest.fixture
def world(session, settings):
    hk = kit.hub_keys(session, settings)
    owner = kit.partner(session, "owner")
    c = kit.collection(session, hk, owner)
    token = factories.token(session, owner, ["feed:read", "hashes:write"])
    return hk, owner, c, factories.auth(token)


def _counts(session):
    return (
        session.scalar(select(func.count()).select_from(Signal)),
        session.scalar(select(func.count()).select_from(AuditEntry)),
    )


def test_readers_see_the_feed_and_others_get_404(client, session, world):
    hk, owner, c, _auth = world
    reader, stranger = kit.partner(session), kit.partner(session)
    kit.grant(session, hk, c, reader)
    kit.submit(session, c, owner, [{"type": "pdq", "value": kit.pdq()}])
    kit.seal(session, hk)
    for who, status in ((reader, 200), (stranger, 404)):
        auth = factories.auth(factories.token(session, who, ["feed:read"]))
        for path in (
            "",
            "/checkpoint",
            "/batches?since_size=0",
            "/batches/1",
            "/snapshot",
            "/snapshot/chunks/0",
        ):
            assert client.get(f"/v1/collections/{c.id}{path}", headers=auth).status_code == status, (
                who,
                path,
            )
        listed = client.get("/v1/collections", headers=auth).get_json()
        assert [x["id"] for x in listed] == ([c.id] if status == 200 else [])


def test_feed_routes_need_feed_read(client, session, world):
    _hk, owner, c, _auth = world
    auth = factories.auth(factories.token(session, owner, ["hashes:write"]))
    assert client.get(f"/v1/collections/{c.id}", headers=auth).status_code == 403
    assert client.get(f"/v1/collections/{c.id}").status_code == 401


BAD_BODIES = [
    ({"signals": [{"type": "pdq", "value": "00" * 32}]}, 422),
    ({"signals": [{"type": "md5", "value": "xyz"}]}, 422),
    ({"signals": []}, 422),
    ({"signal": []}, 422),
    ({"signals": [{"type": "md5", "value": f"{i:032x}"} for i in range(10_001)]}, 413),
    ({"signals": {"type": "md5", "value": "a" * 32}}, 422),
    ({"signals": None}, 422),
]


@pytest.mark.parametrize(
    ("body", "status"),
    BAD_BODIES,
    ids=["all-zero pdq", "md5 not hex", "empty list", "misspelt field", "10,001 signals", "not a list", "null"],
)
def test_bad_submissions_change_nothing(client, session, world, body, status):
    _hk, _owner, c, auth = world
    before = _counts(session)
    response = client.post(f"/v1/collections/{c.id}/signals", json=body, headers=auth)
    assert response.status_code == status
    assert response.get_json()["code"] == status
    assert _counts(session) == before


def test_submit_is_idempotent_and_retract_works(client, session, world):
    _hk, _owner, c, auth = world
    body = {
        "signals": [{"type": "pdq", "value": kit.pdq(), "quality": 90, "tags": ["ncii"], "case_ref": "c-1"}]
    }
    headers = {**auth, "Idempotency-Key": "req-1"}
    first = client.post(f"/v1/collections/{c.id}/signals", json=body, headers=headers)
    assert first.status_code == 201
    again = client.post(f"/v1/collections/{c.id}/signals", json=body, headers=headers)
    assert again.status_code == 201 and again.get_json() == first.get_json()
    assert again.headers["Idempotency-Replayed"] == "true"
    other = client.post(
        f"/v1/collections/{c.id}/signals",
        json={"signals": [{"type": "md5", "value": "a" * 32}]},
        headers=headers,
    )
    assert other.status_code == 422
    sid = first.get_json()["ids"][0]
    assert client.delete(f"/v1/collections/{c.id}/signals/{sid}", headers=auth).status_code == 204
    assert client.delete(f"/v1/collections/{c.id}/signals/{sid}", headers=auth).status_code == 409


def test_batch_etag_and_304(client, session, world):
    hk, owner, c, auth = world
    kit.submit(session, c, owner, [{"type": "pdq", "value": kit.pdq()}])
    kit.seal(session, hk)
    first = client.get(f"/v1/collections/{c.id}/batches/1", headers=auth)
    assert first.status_code == 200 and "immutable" in first.headers["Cache-Control"]
    again = client.get(
        f"/v1/collections/{c.id}/batches/1", headers={**auth, "If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304
    assert client.get(f"/v1/collections/{c.id}/batches/2", headers=auth).status_code == 404
    assert client.get(f"/v1/collections/{c.id}/batches?since_size=5", headers=auth).status_code == 422


def test_ack_must_name_a_real_checkpoint(client, session, world):
    from audit.merkle import b64encode
    from hub.feed import batches

    hk, owner, c, auth = world
    kit.submit(session, c, owner, [{"type": "pdq", "value": kit.pdq()}])
    kit.seal(session, hk)
    root = b64encode(batches.head(session, c.id).root)
    before = _counts(session)
    assert (
        client.post(
            f"/v1/collections/{c.id}/ack", json={"size": 1, "root": b64encode(b"\0" * 32)}, headers=auth
        ).status_code
        == 422
    )
    assert (
        client.post(f"/v1/collections/{c.id}/ack", json={"size": 2, "root": root}, headers=auth).status_code
        == 422
    )
    assert _counts(session) == before
    ok = client.post(f"/v1/collections/{c.id}/ack", json={"size": 1, "root": root}, headers=auth)
    assert ok.status_code == 200 and ok.get_json()["audit_seq"] == before[1]


def test_metrics_expose_feed_state(client, session, world):
    hk, owner, c, _auth = world
    scrape = factories.auth(factories.token(session, factories.partner(session, kind="governance"), ["metrics:read"]))
    kit.submit(session, c, owner, [{"type": "pdq", "value": kit.pdq()}])
    text = client.get("/metrics", headers=scrape).get_data(as_text=True)
    assert f'hashfed_pending_changes{{collection="{c.slug}"}} 1.0' in text
    kit.seal(session, hk)
    text = client.get("/metrics", headers=scrape).get_data(as_text=True)
    assert f'hashfed_batches_sealed_total{{collection="{c.slug}"}} 1.0' in text
    assert 'hashfed_signals{status="active"} 1.0' in text
    assert "hashfed_http_requests_total" in text


def test_snapshot_chunks_cover_every_active_signal_once_and_match_their_digests(
    client, session, world, monkeypatch
):
    """Chunks are read from their first id (keyset paging); over several chunks, with a removal in between."""
    import hashlib
    import json

    from audit.dsse import Envelope
    from audit.payloads import Snapshot
    from hub.feed import snapshots

    monkeypatch.setattr(snapshots, "CHUNK_SIZE", 3)
    hk, owner, c, auth = world
    kit.submit(session, c, owner, [{"type": "pdq", "value": kit.pdq()} for _ in range(11)])
    kit.seal(session, hk)
    first = sorted(session.scalars(select(Signal.id).where(Signal.collection_id == c.id)))[4]
    r = client.delete(f"/v1/collections/{c.id}/signals/{first}", headers=auth)
    assert r.status_code in (200, 202, 204), r.get_json()
    kit.seal(session, hk)

    envelope = Envelope.from_json(client.get(f"/v1/collections/{c.id}/snapshot", headers=auth).data)
    snap = Snapshot.from_bytes(envelope.payload)
    assert [ch.count for ch in snap.chunks] == [3, 3, 3, 1]
    seen = []
    for ch in snap.chunks:
        body = client.get(f"/v1/collections/{c.id}/snapshot/chunks/{ch.index}", headers=auth).data
        assert hashlib.sha256(body).hexdigest() == ch.sha256
        seen += [s["id"] for s in json.loads(body)["signals"]]
    assert seen == sorted(seen) and len(set(seen)) == 10 and first not in seen
    # Another process (an empty cache) computes the same chunk boundaries in the database.
    assert snapshots.chunk_starts(session, c.id, snap.seq) == seen[::3]
    assert client.get(f"/v1/collections/{c.id}/snapshot/chunks/4", headers=auth).status_code == 404
    # The earlier seq's chunks are still served, from boundaries computed in the database.
    old = client.get(f"/v1/collections/{c.id}/snapshot/chunks/1?seq=1", headers=auth)
    assert old.status_code == 200 and len(json.loads(old.data)["signals"]) == 3
