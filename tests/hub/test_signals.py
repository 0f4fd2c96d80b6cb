"""Submission, deduplication, idempotency, the deny list and retraction, at the service level."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hub.errors import ConflictError, ForbiddenError, NotFoundError, PayloadTooLargeError, ValidationError
from hub.feed import signals
from hub.feed.models import Access, IdempotencyKey, PendingChange, Signal, SignalClaim
from hub.transparency.auditlog import Actor
from hub.transparency.models import AuditEntry
from tests.hub import feedkit as kit


@pytest.fixture
def world(session, settings):
    keys = kit.hub_keys(session, settings)
    owner = kit.partner(session, "owner")
    c = kit.collection(session, keys, owner, min_quality=50)
    return keys, owner, c


def _counts(session):
    return (
        session.scalar(select(func.count()).select_from(Signal)),
        session.scalar(select(func.count()).select_from(AuditEntry)),
        session.scalar(select(func.count()).select_from(IdempotencyKey)),
    )


BAD = [
    ({"type": "pdq", "value": "ab" * 31}, "62"),
    ({"type": "pdq", "value": "zz" * 32}, "not hex"),
    ({"type": "pdq", "value": "0" * 64}, "all-zero"),
    ({"type": "pdq", "value": "ab" * 32, "quality": 49}, "below"),
    ({"type": "pdq", "value": "ab" * 32, "quality": 101}, "0 to 100"),
    ({"type": "pdq", "value": "ab" * 32, "quality": "90"}, "integer"),
    ({"type": "md5", "value": "ab" * 15}, "32 hex"),
    ({"type": "md5", "value": "ab" * 16, "quality": 90}, "pdq signals only"),
    ({"type": "sha256", "value": "g" * 64}, "not hex"),
    ({"type": "tmk", "value": "ab" * 32}, "type must be"),
    ({"type": "pdq", "value": 12}, "string"),
    ({"type": "pdq", "value": "ab" * 32, "tags": "x"}, "tags"),
    ({"type": "pdq", "value": "ab" * 32, "tags": ["has space"]}, "tags"),
    ({"type": "pdq", "value": "ab" * 32, "case_ref": ""}, "case_ref"),
    ({"type": "pdq", "value": "ab" * 32, "colour": "red"}, "unknown fields"),
    ("pdq:abc", "an item is an object"),
]
BAD_IDS = [
    "pdq too short",
    "pdq not hex",
    "all-zero pdq",
    "quality below minimum",
    "quality above 100",
    "quality not an int",
    "md5 too short",
    "quality on md5",
    "sha256 not hex",
    "unknown type",
    "value not a string",
    "tags not a list",
    "tag with a space",
    "empty case ref",
    "unknown field",
    "item not an object",
]


@pytest.mark.parametrize(("item", "message"), BAD, ids=BAD_IDS)
def test_a_bad_item_refuses_the_whole_request_and_writes_nothing(session, world, item, message):
    _keys, owner, c = world
    good = {"type": "pdq", "value": kit.pdq(), "quality": 90}
    before = _counts(session)
    with pytest.raises(ValidationError) as e:
        kit.submit(session, c, owner, [good, item])
    assert list(e.value.errors["signals"]) == ["1"]
    assert message in " ".join(e.value.errors["signals"]["1"])
    assert _counts(session) == before


def test_too_many_signals_is_a_413(session, world):
    _keys, owner, c = world
    items = [{"type": "md5", "value": f"{i:032x}"} for i in range(signals.MAX_SIGNALS_PER_REQUEST + 1)]
    with pytest.raises(PayloadTooLargeError):
        kit.submit(session, c, owner, items)


def test_a_type_the_collection_does_not_take_is_refused(session, world):
    keys, owner, _c = world
    c = kit.collection(session, keys, owner, types=("pdq",))
    with pytest.raises(ValidationError) as e:
        kit.submit(session, c, owner, [{"type": "md5", "value": "a" * 32}])
    assert "does not take md5" in e.value.errors["signals"]["0"][0]


def test_values_are_normalized_and_deduplicated_within_the_request_and_collection(session, world):
    _keys, owner, c = world
    value = kit.pdq()
    first = kit.submit(
        session,
        c,
        owner,
        [{"type": "pdq", "value": value.upper(), "quality": 80}, {"type": "pdq", "value": value}],
    )
    assert first.body["accepted"] == 1 and first.body["duplicates"] == 1
    assert first.body["ids"][0] == first.body["ids"][1]
    again = kit.submit(
        session, c, owner, [{"type": "pdq", "value": value}, {"type": "md5", "value": "A" * 32}]
    )
    assert again.body["accepted"] == 1 and again.body["ids"][0] == first.body["ids"][0]
    stored = session.scalars(select(Signal.value).where(Signal.collection_id == c.id)).all()
    assert sorted(stored) == sorted([value, "a" * 32])


def test_a_request_with_an_active_value_writes_one_gapless_audit_entry_and_only_the_new_signals(session, world):
    """On PostgreSQL the request is first written as all new; the active value undoes that write (audit entry
    included) and the request is written again with its duplicate."""
    _keys, owner, c = world
    old = kit.pdq()
    first = kit.submit(session, c, owner, [{"type": "pdq", "value": old}])
    seqs_before = session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)).all()
    new = kit.pdq()
    again = kit.submit(session, c, owner, [{"type": "pdq", "value": new}, {"type": "pdq", "value": old}])
    assert again.body["accepted"] == 1 and again.body["duplicates"] == 1
    assert again.body["ids"][1] == first.body["ids"][0] and again.new_ids == [again.body["ids"][0]]
    seqs = session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)).all()
    assert seqs == [*seqs_before, seqs_before[-1] + 1] and again.body["audit_seq"] == seqs[-1]
    entry = session.scalars(select(AuditEntry.entry).where(AuditEntry.seq == seqs[-1])).one()
    assert b'"count":1' in entry and b'"duplicates":1' in entry and again.new_ids[0].encode() in entry
    pending = session.scalars(
        select(PendingChange.signal_id).where(PendingChange.collection_id == c.id)
    ).all()
    assert sorted(pending) == sorted([first.body["ids"][0], again.body["ids"][0]])
    assert sorted(session.scalars(select(Signal.value).where(Signal.collection_id == c.id))) == sorted([old, new])


def test_one_audit_entry_per_request_naming_ids_never_values(session, world):
    _keys, owner, c = world
    value = kit.pdq()
    before = _counts(session)[1]
    result = kit.submit(session, c, owner, [{"type": "pdq", "value": value, "tags": ["ncii"]}])
    entries = session.scalars(select(AuditEntry.entry).order_by(AuditEntry.seq.desc()).limit(2)).all()
    assert _counts(session)[1] == before + 1
    assert value.encode() not in entries[0]
    assert result.new_ids[0].encode() in entries[0]
    assert b'"signals.submit"' in entries[0]


def test_a_large_request_is_audited_by_digest(session, world):
    _keys, owner, c = world
    items = [{"type": "md5", "value": f"{i:032x}"} for i in range(1, 502)]
    result = kit.submit(session, c, owner, items)
    entry = session.scalars(select(AuditEntry.entry).order_by(AuditEntry.seq.desc()).limit(1)).one()
    assert signals.ids_digest(result.new_ids).encode() in entry


def test_idempotency_key_replays_the_response_and_refuses_another_body(session, world):
    _keys, owner, c = world
    items = [{"type": "pdq", "value": kit.pdq()}]

    def call(body, digest):
        return signals.submit(
            session,
            collection_id=c.id,
            partner_id=owner.id,
            items=body,
            actor=kit.actor_of(owner),
            idempotency_key="k-1",
            request_sha256=digest,
        )

    first = call(items, "a" * 64)
    counts = _counts(session)
    replay = call(items, "a" * 64)
    assert replay.replayed and replay.body == first.body
    assert _counts(session) == counts
    with pytest.raises(ValidationError):
        call([{"type": "pdq", "value": kit.pdq()}], "b" * 64)
    assert _counts(session) == counts


def test_a_retired_value_is_a_409_and_writes_nothing(session, world):
    _keys, owner, c = world
    value = kit.pdq()
    sid = kit.submit(session, c, owner, [{"type": "pdq", "value": value}]).new_ids[0]
    signals.retire(session, collection_id=c.id, signal_id=sid, actor=Actor(type="user", user="staff"))
    before = _counts(session)
    with pytest.raises(ConflictError) as e:
        kit.submit(session, c, owner, [{"type": "md5", "value": "b" * 32}, {"type": "pdq", "value": value}])
    assert list(e.value.errors["signals"]) == ["1"]
    assert _counts(session) == before


def test_only_contributors_submit_and_others_do_not_learn_the_collection_exists(session, world):
    keys, _owner, c = world

    reader, stranger = kit.partner(session), kit.partner(session)
    kit.grant(session, keys, c, reader)
    item = [{"type": "pdq", "value": kit.pdq()}]
    with pytest.raises(ForbiddenError):
        kit.submit(session, c, reader, item)
    with pytest.raises(NotFoundError):
        kit.submit(session, c, stranger, item)


def test_retraction_by_contributor_only_and_once(session, world):
    keys, owner, c = world

    other = kit.partner(session)
    kit.grant(session, keys, c, other, Access.CONTRIBUTOR)
    sid = kit.submit(session, c, owner, [{"type": "pdq", "value": kit.pdq()}]).new_ids[0]
    with pytest.raises(NotFoundError):
        signals.retract(
            session, collection_id=c.id, signal_id=sid, partner_id=other.id, actor=kit.actor_of(other)
        )
    signals.retract(
        session, collection_id=c.id, signal_id=sid, partner_id=owner.id, actor=kit.actor_of(owner)
    )
    row = session.get(Signal, sid)
    assert row.status == "retracted" and not signals.is_pending(session, sid)  # never published: no remove
    with pytest.raises(ConflictError):
        signals.retract(
            session, collection_id=c.id, signal_id=sid, partner_id=owner.id, actor=kit.actor_of(owner)
        )
    # the value may come back as a new signal
    again = kit.submit(session, c, owner, [{"type": "pdq", "value": row.value}])
    assert again.new_ids and again.new_ids[0] != sid


def test_new_ids_are_distinct_uuid_version_7():
    import uuid

    ids = signals.new_ids(2_000)
    parsed = [uuid.UUID(i) for i in ids]
    assert len(set(ids)) == len(ids)
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 and str(u) == i for u, i in zip(parsed, ids, strict=True))


@pytest.mark.parametrize(
    "case_ref",
    ['a "quoted", back\\slash {x}', "NULL", " spaced ", "caf\u00e9"],
    ids=["quotes", "NULL", "spaces", "utf-8"],
)
def test_free_text_and_tags_are_stored_exactly(session, world, case_ref):
    _keys, owner, c = world
    sid = kit.submit(
        session, c, owner, [{"type": "pdq", "value": kit.pdq(), "tags": ["b:x/y", "a"], "case_ref": case_ref}]
    ).new_ids[0]
    row = session.execute(select(Signal.tags, Signal.quality).where(Signal.id == sid)).one()
    assert tuple(row) == ('["a","b:x/y"]', None)
    # The case reference is kept only as its keyed digest, exactly as given.
    claims = session.execute(
        select(SignalClaim.partner_id, SignalClaim.case_digest).where(SignalClaim.signal_id == sid)
    )
    assert claims.all() == [(owner.id, signals.case_digest(kit.HUB_SECRET, owner.id, case_ref))]
