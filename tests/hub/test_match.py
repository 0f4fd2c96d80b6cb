"""`POST /v1/match` through the Flask test client: readers only, thresholds, validation, incremental index."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import func, select

from hub import rls
from hub.feed import signals
from hub.identity.models import PartnerKind
from hub.matching import routes as match_routes
from hub.matching import service as match
from hub.transparency.models import AuditEntry
from tests.hub import factories as f
from tests.hub import feedkit as fk


def flip(value: str, bits: int) -> str:
    """`value` with its lowest `bits` bits inverted: at PDQ distance exactly `bits`."""
    n = int(value, 16) ^ ((1 << bits) - 1)
    return f"{n:064x}"


@pytest.fixture
def world(session, settings):
    """Owner's collection with one PDQ, one MD5 and one SHA-256 signal, sealed; a reader; a stranger."""
    keys = fk.hub_keys(session, settings)
    owner = fk.partner(session, "owner")
    reader = fk.partner(session, "reader")
    stranger = fk.partner(session, "stranger")
    c = fk.collection(session, keys, owner)
    fk.grant(session, keys, c, reader)
    pdq = "f" * 32 + secrets.token_hex(16)
    md5, sha = secrets.token_hex(16), secrets.token_hex(32)
    items = [{"type": "pdq", "value": pdq, "quality": 90}, {"type": "md5", "value": md5},
             {"type": "sha256", "value": sha}]
    ids = fk.submit(session, c, owner, items).body["ids"]
    fk.seal(session, keys)
    # A stranger's own collection: the stranger can read it, the reader cannot.
    other = fk.collection(session, keys, stranger)
    fk.submit(session, other, stranger, [{"type": "pdq", "value": pdq, "quality": 90}])
    fk.seal(session, keys)
    session.flush()
    tokens = {p: f.token(session, row, ["match"]) for p, row in
              (("owner", owner), ("reader", reader), ("stranger", stranger))}
    return {"keys": keys, "c": c, "other": other, "owner": owner, "ids": ids, "pdq": pdq, "md5": md5,
            "sha": sha, "tokens": tokens}


def post(client, token, queries):
    return client.post("/v1/match", json={"queries": queries}, headers=f.auth(token))


def test_reader_matches_by_type_with_distance_and_seq(client, world):
    r = post(client, world["tokens"]["reader"], [
        {"type": "pdq", "value": flip(world["pdq"], 5)},
        {"type": "md5", "value": world["md5"].upper()},
        {"type": "sha256", "value": world["sha"]},
        {"type": "pdq", "value": flip(world["pdq"], 40)},
    ])
    assert r.status_code == 200, r.json
    results = r.json["results"]
    assert [x["index"] for x in results] == [0, 1, 2, 3]
    assert results[0]["matches"] == [
        {"collection": world["c"].id, "signal": world["ids"][0], "distance": 5, "seq": 1}
    ]
    assert results[1]["matches"][0]["signal"] == world["ids"][1]
    assert results[2]["matches"][0] == {"collection": world["c"].id, "signal": world["ids"][2], "distance": 0,
                                        "seq": 1}
    assert results[3]["matches"] == []  # beyond the collection's threshold of 31


def test_a_partner_never_gets_matches_from_collections_it_cannot_read(client, world):
    # The stranger holds the same PDQ in its own collection: it sees only that one, never the owner's.
    r = post(client, world["tokens"]["stranger"], [{"type": "pdq", "value": world["pdq"]},
                                                   {"type": "md5", "value": world["md5"]}])
    assert r.status_code == 200
    found = [m["collection"] for res in r.json["results"] for m in res["matches"]]
    assert found == [world["other"].id]
    assert world["c"].id.encode() not in r.data and world["ids"][0].encode() not in r.data
    # The reader sees the owner's collection only, not the stranger's.
    r = post(client, world["tokens"]["reader"], [{"type": "pdq", "value": world["pdq"]}])
    assert [m["collection"] for m in r.json["results"][0]["matches"]] == [world["c"].id]


def test_scope_and_token_are_required(client, session, world):
    assert client.post("/v1/match", json={"queries": []}).status_code == 401
    no_match_scope = f.token(session, world["owner"], ["feed:read"])
    assert post(client, no_match_scope, [{"type": "md5", "value": world["md5"]}]).status_code == 403


def test_a_suspended_reader_gets_nothing(client, session, world):
    gov = fk.partner(session, "gov", kind=PartnerKind.GOVERNANCE)
    token = f.token(session, gov, ["match"])  # a token of a partner with no reader access
    r = post(client, token, [{"type": "md5", "value": world["md5"]}])
    assert r.status_code == 200 and r.json["results"][0]["matches"] == []


def test_a_query_threshold_only_lowers_the_collections(client, world):
    q = flip(world["pdq"], 20)
    token = world["tokens"]["reader"]
    assert post(client, token, [{"type": "pdq", "value": q, "threshold": 10}]).json["results"][0]["matches"] == []
    hit = post(client, token, [{"type": "pdq", "value": q, "threshold": 25}]).json["results"][0]["matches"]
    assert [m["distance"] for m in hit] == [20]
    # 64 asks for more than the collection's 31: capped, so distance 40 still does not match.
    far = flip(world["pdq"], 40)
    assert post(client, token, [{"type": "pdq", "value": far, "threshold": 64}]).json["results"][0]["matches"] == []


@pytest.mark.parametrize(
    ("queries", "status", "named"),
    [
        ([{"type": "pdq", "value": "xyz"}], 422, ["0"]),
        ([{"type": "md5", "value": "a" * 31}, {"type": "md5", "value": "a" * 32}, {"type": "sha1", "value": "a"}],
         422, ["0", "2"]),
        ([{"type": "pdq", "value": "a" * 64, "threshold": 65}], 422, ["0"]),
        ([{"type": "pdq", "value": "a" * 64, "threshold": True}], 422, ["0"]),
        ([{"type": "pdq", "value": "a" * 64, "image": "..."}], 422, ["0"]),
        (["a" * 64], 422, ["0"]),
        ([], 422, []),
        ([{"type": "md5", "value": "a" * 32}] * 1001, 413, []),
    ],
    ids=["bad hex", "each bad item named", "threshold over 64", "boolean threshold", "media field refused",
         "not an object", "empty", "over 1,000"],
)
def test_bad_input_is_refused_and_changes_nothing(client, session, world, queries, status, named):
    f.as_system(session)
    before = session.scalar(select(func.count()).select_from(AuditEntry))
    r = post(client, world["tokens"]["reader"], queries)
    assert r.status_code == status, r.json
    if named:
        assert sorted(r.json["errors"]["queries"]) == named
    if status == 413:
        assert "1000" in r.json["message"]
    f.as_system(session)
    assert session.scalar(select(func.count()).select_from(AuditEntry)) == before


def test_a_match_writes_no_audit_entry(client, session, world):
    f.as_system(session)
    before = session.scalar(select(func.count()).select_from(AuditEntry))
    assert post(client, world["tokens"]["reader"], [{"type": "md5", "value": world["md5"]}]).status_code == 200
    f.as_system(session)
    assert session.scalar(select(func.count()).select_from(AuditEntry)) == before


def test_new_batches_update_the_index_in_place_and_a_sealed_retraction_stops_matching(app, client, session, world):
    token = world["tokens"]["reader"]
    assert post(client, token, [{"type": "md5", "value": world["md5"]}]).json["results"][0]["matches"]
    index = app.extensions["hashfed"].services[match_routes._SERVICE]
    matcher = index.matcher
    assert index.builds == 1

    # A new signal is sealed into batch 2: found at once, with seq 2, and nothing was rebuilt.
    new_md5 = secrets.token_hex(16)
    new_id = fk.submit(session, world["c"], world["owner"], [{"type": "md5", "value": new_md5}]).body["ids"][0]
    r = post(client, token, [{"type": "md5", "value": new_md5}])
    assert r.json["results"][0]["matches"] == []  # pending, not published yet
    fk.seal(session, world["keys"])
    r = post(client, token, [{"type": "md5", "value": new_md5}])
    assert r.json["results"][0]["matches"][0]["signal"] == new_id
    assert r.json["results"][0]["matches"][0]["seq"] == 2

    # A retraction matches until it is sealed, then no more.
    rls.set_tenant(session, world["owner"].id)  # as the contributor's own request would
    signals.retract(session, collection_id=world["c"].id, signal_id=world["ids"][1], partner_id=world["owner"].id,
                    actor=fk.actor_of(world["owner"]))
    assert post(client, token, [{"type": "md5", "value": world["md5"]}]).json["results"][0]["matches"]
    fk.seal(session, world["keys"])
    assert post(client, token, [{"type": "md5", "value": world["md5"]}]).json["results"][0]["matches"] == []
    assert index.builds == 1 and index.matcher is matcher and index.batches_applied == 2
    assert index.heads[world["c"].id] == 3


def test_the_first_build_reflects_published_state_only(app, client, session, world):
    """Built after a retraction was sealed and while another waits: published state, no pending changes."""
    rls.set_tenant(session, world["owner"].id)  # as the contributor's own request would
    signals.retract(session, collection_id=world["c"].id, signal_id=world["ids"][2], partner_id=world["owner"].id,
                    actor=fk.actor_of(world["owner"]))
    fk.seal(session, world["keys"])
    rls.set_tenant(session, world["owner"].id)  # as the contributor's own request would
    signals.retract(session, collection_id=world["c"].id, signal_id=world["ids"][1], partner_id=world["owner"].id,
                    actor=fk.actor_of(world["owner"]))
    r = post(client, world["tokens"]["reader"], [{"type": "sha256", "value": world["sha"]},
                                                 {"type": "md5", "value": world["md5"]}])
    results = r.json["results"]
    assert results[0]["matches"] == []  # removed in seq 2
    assert results[1]["matches"][0]["seq"] == 1  # retraction pending: still published


def test_parse_queries_normalizes_hex():
    (q,) = match.parse_queries([{"type": "md5", "value": "AB" * 16}])
    assert q == match.Query("md5", "ab" * 16, None)
