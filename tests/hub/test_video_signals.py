"""Video signal types on the hub: `video_md5` end to end (submission, signed batch, match, report); `vpdq`
values are not taken by the hub's feed yet (docs/formats.md, "vpdq")."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select

from audit.keyset import TrustedKeySet
from audit.payloads import BatchPayload, open_payload
from hub.feed.models import Batch
from hub.transparency import keys
from tests.hub import factories as f
from tests.hub import feedkit as fk

VIDEO_TYPES = ("pdq", "md5", "sha256", "video_md5")


@pytest.fixture
def world(session, settings):
    hk = fk.hub_keys(session, settings)
    owner, reader = fk.partner(session, "owner"), fk.partner(session, "reader")
    videos = fk.collection(session, hk, owner, types=VIDEO_TYPES)
    images = fk.collection(session, hk, owner)
    fk.grant(session, hk, videos, reader)
    return {"keys": hk, "owner": owner, "reader": reader, "videos": videos, "images": images}


def test_video_md5_is_submitted_signed_in_a_batch_and_matched_as_its_own_type(session, client, world):
    md5 = secrets.token_hex(16)
    [sid] = fk.submit(session, world["videos"], world["owner"], [{"type": "video_md5", "value": md5.upper()}]).body[
        "ids"
    ]
    [sealed] = fk.seal(session, world["keys"])
    assert sealed.adds == 1
    row = keys.latest_record(session)
    batch = session.scalars(select(Batch).where(Batch.collection_id == world["videos"].id)).one()
    payload = open_payload(TrustedKeySet(bytes(row.envelope), row.payload_sha256), bytes(batch.envelope), BatchPayload)
    assert [(a.id, a.type, a.value) for a in payload.adds] == [(sid, "video_md5", md5)]
    session.flush()
    token = f.token(session, world["reader"], ["match"])
    r = client.post("/v1/match", json={"queries": [{"type": "video_md5", "value": md5}, {"type": "md5", "value": md5}]},
                    headers=f.auth(token))
    assert r.status_code == 200, r.json
    video, image = r.json["results"]
    assert [(m["signal"], m["distance"]) for m in video["matches"]] == [(sid, 0)]
    assert image["matches"] == []  # an image's md5 never matches a video's


def test_a_collection_takes_video_md5_only_when_its_types_say_so(session, world):
    from hub.errors import ValidationError

    with pytest.raises(ValidationError):
        fk.submit(session, world["images"], world["owner"], [{"type": "video_md5", "value": secrets.token_hex(16)}])


def test_vpdq_values_are_refused_by_the_feed(session, world):
    from hub.errors import ValidationError

    value = '["' + secrets.token_hex(32) + ',100,0.000"]'
    with pytest.raises(ValidationError):
        fk.submit(session, world["videos"], world["owner"], [{"type": "vpdq", "value": value}])
