"""The round trip submit -> seal -> fetch -> verify, by a client written only from docs/protocol.md."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from audit.merkle import b64decode, b64encode
from hub.feed import signals
from hub.transparency import keys
from tests.hub import factories
from tests.hub import feedkit as kit
from tests.hub.protocol_client import FeedClient, Mirror, ProtocolError

NOW = kit.T0 + timedelta(seconds=30)


@pytest.fixture
def world(session, settings, client):
    hk = kit.hub_keys(session, settings)
    owner = kit.partner(session, "owner")
    c = kit.collection(session, hk, owner)
    token = factories.token(session, owner, ["feed:read", "hashes:write"])
    feed = FeedClient(client, token, keys.latest_record(session).payload_sha256)
    feed.load_keys(NOW)
    return hk, owner, c, feed


def _submit(client, feed, c, items):
    response = client.post(f"/v1/collections/{c.id}/signals", json={"signals": items}, headers=feed.headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["ids"]


def test_round_trip_submit_seal_fetch_verify_retract(client, session, world):
    hk, owner, c, feed = world
    d = feed.descriptor(c.id, NOW)
    assert (d.pdq_threshold, d.min_quality) == (31, 50)
    values = [kit.pdq() for _ in range(25)]
    ids = _submit(client, feed, c, [{"type": "pdq", "value": v, "quality": 80} for v in values])
    kit.seal(session, hk, max_entries=10)  # three batches
    mirror = feed.sync(c.id, Mirror(), "hub.test", NOW, limit=2)
    assert mirror.size == 3 and sorted(v for _t, v in mirror.signals.values()) == sorted(values)
    assert feed.ack(c.id, mirror) > 0

    signals.retract(
        session, collection_id=c.id, signal_id=ids[0], partner_id=owner.id, actor=kit.actor_of(owner)
    )
    kit.seal(session, hk, now=kit.T0 + timedelta(seconds=10))
    mirror = feed.sync(c.id, mirror, "hub.test", NOW)
    assert mirror.size == 4 and ids[0] not in mirror.signals and len(mirror.signals) == 24

    fresh = feed.start_from_snapshot(c.id, "hub.test", NOW)
    assert fresh.signals == mirror.signals and fresh.frontier.root() == mirror.frontier.root()


class Tampering:
    """A transport that changes one byte of the first batch payload it forwards."""

    def __init__(self, inner):
        self.inner = inner

    def get(self, path, headers):
        response = self.inner.get(path, headers=headers)
        if "/batches?" in path:
            page = json.loads(response.data)
            if page["batches"]:
                payload = bytearray(b64decode(page["batches"][0]["payload"], "payload"))
                payload[-3] ^= 0x01
                page["batches"][0]["payload"] = b64encode(bytes(payload))
                response.set_data(json.dumps(page).encode())
        return response

    def post(self, path, json, headers):
        return self.inner.post(path, json=json, headers=headers)


def test_a_tampered_envelope_is_refused(client, session, world):
    hk, _owner, c, feed = world
    _submit(client, feed, c, [{"type": "md5", "value": "ab" * 16}])
    kit.seal(session, hk)
    feed.http = Tampering(client)
    with pytest.raises(Exception) as e:
        feed.sync(c.id, Mirror(), "hub.test", NOW)
    assert not isinstance(e.value, AssertionError)


def test_a_stale_cosignature_is_refused(client, session, world):
    hk, _owner, c, feed = world
    _submit(client, feed, c, [{"type": "md5", "value": "ab" * 16}])
    kit.seal(session, hk)
    with pytest.raises(ProtocolError, match="stale"):
        feed.sync(c.id, Mirror(), "hub.test", NOW + timedelta(hours=2))
