"""Video signal types on the hub: `video_md5` and `vpdq` end to end (submission, signed batch, snapshot,
match), strict refusal of bad vpdq values, and the vPDQ percentage P in the signed collection descriptor."""

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


# --- vpdq ------------------------------------------------------------------------------------------------


def frames_of(words: list[str], quality: int = 100) -> list[tuple[str, int, float]]:
    return [(w, quality, float(i)) for i, w in enumerate(words)]


def json_form(frames: list[tuple[str, int, float]], *, spaced: bool = False) -> str:
    sep = ", " if spaced else ","
    return "[" + sep.join(f'"{h.upper() if spaced else h},{q},{t}"' for h, q, t in frames) + "]"


def canonical(frames: list[tuple[str, int, float]]) -> str:
    return "[" + ",".join(f'"{h},{q},{t:.3f}"' for h, q, t in frames) + "]"


def flip(word: str, bits: int) -> str:
    n = int(word, 16)
    for b in range(bits):
        n ^= 1 << (b * 7)
    return f"{n:064x}"


@pytest.fixture
def vworld(session, settings):
    hk = fk.hub_keys(session, settings)
    owner, reader = fk.partner(session, "owner"), fk.partner(session, "reader")
    videos = fk.collection(session, hk, owner, types=(*VIDEO_TYPES, "vpdq"))
    fk.grant(session, hk, videos, reader)
    return {"keys": hk, "owner": owner, "reader": reader, "videos": videos}


def trusted(session):
    row = keys.latest_record(session)
    return TrustedKeySet(bytes(row.envelope), row.payload_sha256)


def test_vpdq_is_submitted_signed_with_its_frames_snapshotted_and_matched(session, client, vworld):
    import json

    from hub.feed.models import Signal, VpdqValue
    from partners.matching.vpdq import vpdq_digest

    video = frames_of([secrets.token_hex(32) for _ in range(6)])
    other = frames_of([secrets.token_hex(32) for _ in range(6)])
    text = canonical(video)
    c = vworld["videos"]
    first = fk.submit(session, c, vworld["owner"], [{"type": "vpdq", "value": json_form(video, spaced=True)}])
    [sid] = first.body["ids"]
    # The same video in another accepted form (vpdq's line form) is a duplicate, not a second signal.
    lines = "\n".join(f"{i},{q},{h},{t}" for i, (h, q, t) in enumerate(video))
    again = fk.submit(session, c, vworld["owner"], [{"type": "vpdq", "value": lines}])
    assert again.body["ids"] == [sid] and again.body["duplicates"] == 1
    stored = session.get(Signal, sid)
    assert stored.value == vpdq_digest(text) and session.get(VpdqValue, stored.value).frames == text

    [sealed] = fk.seal(session, vworld["keys"])
    assert sealed.adds == 1
    batch = session.scalars(select(Batch).where(Batch.collection_id == c.id)).one()
    payload = open_payload(trusted(session), bytes(batch.envelope), BatchPayload)
    assert [(a.id, a.type, a.value) for a in payload.adds] == [(sid, "vpdq", text)]

    session.flush()
    token = f.token(session, vworld["reader"], ["feed:read", "match"])
    snap = client.get(f"/v1/collections/{c.id}/snapshot/chunks/0", headers=f.auth(token))
    assert snap.status_code == 200
    assert [(e["id"], e["value"]) for e in json.loads(snap.data)["signals"]] == [(sid, text)]

    near = [(flip(h, 8), q, t + 0.5) for h, q, t in video]  # every frame 8 bits away: a re-encoded copy
    r = client.post(
        "/v1/match",
        json={"queries": [{"type": "vpdq", "value": json_form(near)}, {"type": "vpdq", "value": json_form(other)}]},
        headers=f.auth(token),
    )
    assert r.status_code == 200, r.json
    hit, miss = r.json["results"]
    assert [(m["signal"], m["distance"]) for m in hit["matches"]] == [(sid, 0)]
    assert miss["matches"] == []
    # P comes from the collection: a clip of the first half (3 of 6 frames) matches at P 50, not at 80.
    clip = json_form(video[:3])
    assert client.post("/v1/match", json={"queries": [{"type": "vpdq", "value": clip}]},
                       headers=f.auth(token)).json["results"][0]["matches"] == []
    from hub.feed import collections

    collections.update_settings(session, c.id, actor=fk.Actor.operator(), hub_name=vworld["keys"].hub_name,
                                signer=vworld["keys"].signer("collection"), vpdq_percent=50)
    session.flush()
    r = client.post("/v1/match", json={"queries": [{"type": "vpdq", "value": clip}]}, headers=f.auth(token))
    assert [m["signal"] for m in r.json["results"][0]["matches"]] == [sid]


BAD_VPDQ = [
    ("not a string", 5),
    ("empty array", "[]"),
    ("not json", "[not json"),
    ("short hash", '["abc,100,0.000"]'),
    ("quality over 100", '["' + "ab" * 32 + ',101,0.000"]'),
    ("negative time", '["' + "ab" * 32 + ',100,-1"]'),
    ("time going back", '["' + "ab" * 32 + ',100,2.0","' + "cd" * 32 + ',100,1.0"]'),
    ("too many frames", "[" + ",".join(['"' + "ab" * 32 + ',100,0"'] * 7_201) + "]"),
    ("too long", "[" + " " * 700_000 + "]"),
]


@pytest.mark.parametrize("value", [v for _, v in BAD_VPDQ], ids=[n for n, _ in BAD_VPDQ])
def test_bad_vpdq_values_are_refused_and_change_nothing(session, client, vworld, value):
    from sqlalchemy import func

    from hub.feed.models import Signal, VpdqValue
    from hub.transparency.models import AuditEntry

    c = vworld["videos"]
    token = f.token(session, vworld["owner"], ["hashes:write"])
    session.flush()
    before = (session.scalar(select(func.count()).select_from(AuditEntry)),
              session.scalar(select(func.count()).select_from(VpdqValue)))
    good = {"type": "vpdq", "value": '["' + secrets.token_hex(32) + ',100,0.000"]'}
    r = client.post(f"/v1/collections/{c.id}/signals", json={"signals": [good, {"type": "vpdq", "value": value}]},
                    headers=f.auth(token))
    assert r.status_code == 422, r.json
    assert list(r.json["errors"]["signals"]) == ["1"]
    assert session.scalar(select(func.count()).select_from(Signal).where(Signal.collection_id == c.id)) == 0
    assert (session.scalar(select(func.count()).select_from(AuditEntry)),
            session.scalar(select(func.count()).select_from(VpdqValue))) == before


def test_a_collection_takes_vpdq_only_when_its_types_say_so(session, world):
    from hub.errors import ValidationError

    value = '["' + secrets.token_hex(32) + ',100,0.000"]'
    with pytest.raises(ValidationError):
        fk.submit(session, world["videos"], world["owner"], [{"type": "vpdq", "value": value}])


def test_a_retired_vpdq_video_is_denied_in_any_form(session, vworld):
    from hub.errors import ConflictError
    from hub.feed import signals

    video = frames_of([secrets.token_hex(32) for _ in range(3)])
    [sid] = fk.submit(session, vworld["videos"], vworld["owner"], [{"type": "vpdq", "value": json_form(video)}]).body[
        "ids"
    ]
    retired = signals.retire_value(session, kind="vpdq", value=json_form(video, spaced=True), actor=fk.Actor.operator())
    assert retired.removed == [sid]
    with pytest.raises(ConflictError):
        fk.submit(session, vworld["videos"], vworld["owner"], [{"type": "vpdq", "value": canonical(video)}])


# --- the vPDQ percentage in the signed descriptor ----------------------------------------------------------


def test_the_descriptor_signs_p_and_a_tampered_p_is_refused(session, vworld):
    import base64
    import json

    from audit.dsse import Envelope
    from audit.errors import VerificationError
    from audit.payloads import CollectionDescriptor
    from hub.errors import ValidationError
    from hub.feed import collections

    c, hk = vworld["videos"], vworld["keys"]
    first = open_payload(trusted(session), bytes(c.descriptor), CollectionDescriptor, at=fk.T0)
    assert (first.vpdq_percent, first.vpdq_match_percent) == (80, 80)  # stated, even at the default
    for bad in (0, 101, True):
        with pytest.raises(ValidationError):
            collections.update_settings(session, c.id, actor=fk.Actor.operator(), hub_name=hk.hub_name,
                                        signer=hk.signer("collection"), vpdq_percent=bad)
    collections.update_settings(session, c.id, actor=fk.Actor.operator(), hub_name=hk.hub_name,
                                signer=hk.signer("collection"), vpdq_percent=60)
    d = open_payload(trusted(session), bytes(c.descriptor), CollectionDescriptor, at=fk.T0)
    assert (d.vpdq_percent, d.vpdq_match_percent) == (60, 60)

    envelope = json.loads(bytes(c.descriptor))
    body = json.loads(base64.b64decode(envelope["payload"]))
    body["vpdq_percent"] = 5
    envelope["payload"] = base64.b64encode(json.dumps(body, separators=(",", ":"), sort_keys=True).encode()).decode()
    with pytest.raises(VerificationError):
        forged = Envelope.from_json(json.dumps(envelope).encode())
        open_payload(trusted(session), forged, CollectionDescriptor, at=fk.T0)


def test_a_descriptor_signed_before_p_existed_still_verifies_and_reads_as_80(session, vworld):
    from audit.dsse import sign_envelope
    from audit.payloads import CollectionDescriptor

    old = {
        "id": "c1", "slug": "old", "category": "ncii", "origin": "hub.test/collections/c1",
        "signal_types": ["pdq"], "pdq_threshold": 31, "min_quality": 50,
    }
    from audit.canonical import canonical_json

    raw = canonical_json(old)
    envelope = sign_envelope(CollectionDescriptor.PAYLOAD_TYPE, raw, [vworld["keys"].signer("collection")])
    d = open_payload(trusted(session), envelope.to_json(), CollectionDescriptor, at=fk.T0)
    assert d.vpdq_percent is None and d.vpdq_match_percent == 80
    assert d.to_bytes() == raw  # read back, it is the same bytes: no field appears that was not signed


def test_a_report_names_a_vpdq_signal_by_its_frames_in_any_form(session, client, vworld):
    from datetime import timedelta

    from tests.hub import reportkit as rk

    video = frames_of([secrets.token_hex(32) for _ in range(4)])
    c = vworld["videos"]
    [sid] = fk.submit(session, c, vworld["owner"], [{"type": "vpdq", "value": canonical(video)}]).body["ids"]
    fk.seal(session, vworld["keys"])
    token = f.token(session, vworld["reader"], ["reports:write"])
    session.flush()
    matched = rk.t(rk.now() - timedelta(hours=1))
    report = {
        "id": "v-1", "collection": c.id, "seq": 1, "distance": 0, "outcome": "pending_review", "matched_at": matched,
        "automated_detection": True, "automated_decision": False, "surface": "upload", "content_ref": "post-1",
    }
    bad = client.post("/v1/reports", json={"reports": [{**report, "signal": {"type": "vpdq", "value": "[1]"}}]},
                      headers=f.auth(token))
    assert bad.status_code == 422, bad.json
    r = client.post("/v1/reports", json={"reports": [{**report, "signal": {"type": "vpdq",
                                                                            "value": json_form(video, spaced=True)}}]},
                    headers=f.auth(token))
    assert r.status_code == 201, r.json
    got = client.get("/v1/reports/v-1", headers=f.auth(token))
    assert got.status_code == 200 and got.json["signal"] == sid, got.json


def test_batches_with_long_videos_are_cut_to_fit_the_kits_page_cap(session, vworld, monkeypatch):
    from hub.feed import batches
    from partners.matching.vpdq import vpdq_digest

    texts = [canonical(frames_of([secrets.token_hex(32) for _ in range(n)])) for n in (40, 3, 5)]
    monkeypatch.setattr(batches, "VPDQ_BATCH_BYTES", 2 * (len(texts[0]) + 300))  # two of the longest a batch
    c = vworld["videos"]
    fk.submit(session, c, vworld["owner"], [{"type": "vpdq", "value": t} for t in texts])
    fk.submit(session, c, vworld["owner"], [{"type": "pdq", "value": fk.pdq()} for _ in range(3)])
    [sealed] = fk.seal(session, vworld["keys"])
    assert sealed.seqs == [1, 2, 3] and sealed.adds == 6
    rows = session.scalars(select(Batch).where(Batch.collection_id == c.id).order_by(Batch.seq)).all()
    payloads = [open_payload(trusted(session), bytes(b.envelope), BatchPayload) for b in rows]
    assert [len(p.adds) for p in payloads] == [2, 2, 2]
    vpdq = sorted(a.value for p in payloads for a in p.adds if a.type == "vpdq")
    assert vpdq == sorted(texts) and all(vpdq_digest(t) != t for t in vpdq)


def test_snapshot_chunks_of_a_video_collection_are_cut_by_bytes_too(session, client, vworld, monkeypatch):
    import hashlib
    import json

    from audit.payloads import Snapshot
    from hub.feed import snapshots

    monkeypatch.setattr(snapshots, "CHUNK_SIZE", 4)
    texts = [canonical(frames_of([secrets.token_hex(32) for _ in range(n)])) for n in (30, 2, 30, 2, 2)]
    monkeypatch.setattr(snapshots, "CHUNK_BYTES", len(texts[0]) + 400)  # about one long video a chunk
    c = vworld["videos"]
    ids = fk.submit(session, c, vworld["owner"], [{"type": "vpdq", "value": t} for t in texts]).body["ids"]
    ids += fk.submit(session, c, vworld["owner"], [{"type": "pdq", "value": fk.pdq()} for _ in range(5)]).body["ids"]
    fk.seal(session, vworld["keys"])
    session.flush()
    auth = f.auth(f.token(session, vworld["reader"], ["feed:read"]))
    served = client.get(f"/v1/collections/{c.id}/snapshot", headers=auth).data
    snap = open_payload(trusted(session), served, Snapshot, at=fk.T0)
    seen, sizes = [], []
    for ch in snap.chunks:
        body = client.get(f"/v1/collections/{c.id}/snapshot/chunks/{ch.index}", headers=auth).data
        assert hashlib.sha256(body).hexdigest() == ch.sha256
        entries = json.loads(body)["signals"]
        assert len(entries) == ch.count <= 4
        sizes.append(len(body))
        seen += [(e["id"], e["value"]) for e in entries]
    assert [i for i, _ in seen] == sorted(ids)  # every signal once, in id order
    assert {v for _, v in seen} >= set(texts)
    assert len(snap.chunks) >= 4 and max(sizes) < 2 * (len(texts[0]) + 400) + 1000
    # Another process (an empty cache) computes the same boundaries.
    assert snapshots.chunk_starts(session, c.id, snap.seq) == [
        json.loads(client.get(f"/v1/collections/{c.id}/snapshot/chunks/{ch.index}", headers=auth).data)["signals"][0][
            "id"
        ]
        for ch in snap.chunks
    ]


def test_an_upstream_feeding_a_retired_vpdq_video_refuses_it_and_applies_the_rest(session, settings, vworld):
    """An upstream's vpdq add is text; the hub keeps the digest of its canonical form: a retired video sent by an
    upstream in another form is refused like any retired hash, and the pull's other adds go in."""
    from audit.payloads import Provenance
    from hub.feed import signals
    from hub.feed.models import Signal
    from hub.upstreams import service as upstreams

    retired_video = frames_of([secrets.token_hex(32) for _ in range(3)])
    [old] = fk.submit(session, vworld["videos"], vworld["owner"], [{"type": "vpdq", "value": json_form(retired_video)}]
                      ).body["ids"]
    signals.retire_value(session, kind="vpdq", value=canonical(retired_video), actor=fk.Actor.operator())
    upstream = upstreams.add(
        session, name="programme", kind="stopncii", url="https://upstream.example", collection=vworld["videos"].id,
        partner=None, credentials={"subscription_key": "s", "functions_key": "f"},
        hub_secret=f.hub_secret(settings), actor=fk.Actor.operator(),
    )
    fresh_video = frames_of([secrets.token_hex(32) for _ in range(2)])
    feed = upstreams.Feed(position=7, adds=[
        upstreams.Add(ref="r1", type="vpdq", value=json_form(retired_video, spaced=True),
                      provenance=Provenance("programme", seq=6)),
        upstreams.Add(ref="r2", type="vpdq", value=json_form(fresh_video), provenance=Provenance("programme", seq=7)),
    ])
    imported = upstreams.apply(session, upstream, feed, hub_secret=f.hub_secret(settings), now=fk.T0)
    assert (imported.added, imported.skipped, imported.position) == (1, 1, 7)
    held = session.scalars(select(Signal).where(Signal.collection_id == vworld["videos"].id,
                                                Signal.status == "active")).all()
    assert [s.value for s in held] == [signals.parse_vpdq_value(canonical(fresh_video))[0]]
    assert old not in {s.id for s in held}
