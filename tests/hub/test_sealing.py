"""Sealing: gapless signed batches, the collection's Merkle log, checkpoints, cosignatures, concurrency."""

from __future__ import annotations

import hashlib
import multiprocessing
from datetime import timedelta

import pytest
from sqlalchemy import select

from audit.keyset import TrustedKeySet
from audit.merkle import leaf_hash, root_of, verify_consistency
from audit.note import SIG_COSIGNATURE, NoteVerifier, open_checkpoint
from audit.payloads import BatchPayload, open_payload
from hub.config import Settings
from hub.db import make_session_factory
from hub.feed import batches, signals
from hub.feed.models import Batch, PendingChange, SignalSeq
from hub.transparency import keys
from tests.hub import feedkit as kit


@pytest.fixture
def world(session, settings):
    hk = kit.hub_keys(session, settings)
    owner = kit.partner(session, "owner")
    c = kit.collection(session, hk, owner)
    row = keys.latest_record(session)
    return hk, owner, c, TrustedKeySet(bytes(row.envelope), row.payload_sha256)


def _batches(session, cid):
    return session.scalars(select(Batch).where(Batch.collection_id == cid).order_by(Batch.seq)).all()


def test_seal_writes_a_signed_batch_and_a_cosigned_checkpoint(session, world):
    hk, owner, c, trusted = world
    values = sorted(kit.pdq() for _ in range(5))
    kit.submit(session, c, owner, [{"type": "pdq", "value": v, "quality": 90} for v in values])
    [sealed] = kit.seal(session, hk)
    assert sealed.seqs == [1] and sealed.adds == 5
    [b] = _batches(session, c.id)
    payload = open_payload(trusted, bytes(b.envelope), BatchPayload)
    assert payload.seq == 1 and payload.prev is None and sorted(a.value for a in payload.adds) == values
    assert all(a.audit_seq >= 0 and a.quality == 90 for a in payload.adds)
    assert b.payload_sha256 == hashlib.sha256(bytes(b.payload)).hexdigest()
    head = batches.head(session, c.id)
    origin = f"hub.test/collections/{c.id}"
    cosigner = NoteVerifier("hub.test/timestamp", hk.signer("timestamp").public_key, SIG_COSIGNATURE)
    opened = open_checkpoint(head.note, origin, [hk.signer("checkpoint").public_key], [cosigner])
    assert opened.checkpoint.size == 1 and opened.checkpoint.root == root_of([leaf_hash(bytes(b.payload))])
    assert opened.cosignature_time == int(kit.T0.timestamp())
    assert kit.seal(session, hk) == []  # nothing pending: nothing sealed


def test_large_pending_sets_split_into_chained_batches(session, world):
    hk, owner, c, trusted = world
    kit.submit(session, c, owner, [{"type": "md5", "value": f"{i:032x}"} for i in range(1, 8)])
    [sealed] = kit.seal(session, hk, max_entries=3)
    assert sealed.seqs == [1, 2, 3]
    rows = _batches(session, c.id)
    assert [r.adds for r in rows] == [3, 3, 1]
    prev = None
    for r in rows:
        p = open_payload(trusted, bytes(r.envelope), BatchPayload)
        assert p.prev == prev
        prev = hashlib.sha256(bytes(r.payload)).hexdigest()
    leaves = [leaf_hash(bytes(r.payload)) for r in rows]
    assert batches.root_at(session, c.id, 3) == root_of(leaves)
    verify_consistency(1, 3, root_of(leaves[:1]), root_of(leaves), batches.consistency(session, c.id, 1, 3))


def test_a_retraction_after_sealing_is_a_remove_in_the_next_batch(session, world):
    hk, owner, c, trusted = world
    sid = kit.submit(session, c, owner, [{"type": "pdq", "value": kit.pdq()}]).new_ids[0]
    kit.seal(session, hk)
    retracted = signals.retract(
        session, collection_id=c.id, signal_id=sid, partner_id=owner.id, actor=kit.actor_of(owner)
    )
    kit.seal(session, hk, now=kit.T0 + timedelta(minutes=1))
    second = open_payload(trusted, bytes(_batches(session, c.id)[1].envelope), BatchPayload)
    assert second.adds == () and [(r.id, r.reason) for r in second.removes] == [(sid, "withdrawn")]
    assert second.removes[0].audit_seq == retracted.removed_audit_seq
    assert session.get(SignalSeq, sid).removed_seq == 2


def test_cosignatures_are_refreshed_without_growing_the_tree(session, world):
    hk, owner, c, _trusted = world
    kit.submit(session, c, owner, [{"type": "pdq", "value": kit.pdq()}])
    kit.seal(session, hk)
    later = kit.T0 + timedelta(minutes=10)
    head = batches.cosign(session, c.id, hub_name="hub.test", signers=kit.sealing_signers(hk), now=later)
    cosigner = NoteVerifier("hub.test/timestamp", hk.signer("timestamp").public_key, SIG_COSIGNATURE)
    opened = open_checkpoint(
        head.note, f"hub.test/collections/{c.id}", [hk.signer("checkpoint").public_key], [cosigner]
    )
    assert opened.checkpoint.size == 1 and opened.cosignature_time == int(later.timestamp())
    assert head.note.count("\u2014 ") == 2  # one log signature, one (the newest) cosignature


def _seal_in_process(url: str, var_dir: str, rounds: int) -> None:
    from datetime import UTC, datetime

    from hub.db import make_engine
    from hub.ops import jobs

    settings = Settings(var_dir=var_dir, database_url=url, hub_name="hub.test", max_batch_entries=7)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as s:
        hk = keys.HubKeys.load(settings, s)
    for _ in range(rounds):
        jobs.seal_pending(factory, datetime.now(UTC), keys=hk, settings=settings)
    engine.dispose()


def test_concurrent_sealers_never_duplicate_or_skip_a_seq(fresh_database, tmp_path):
    settings = Settings(var_dir=tmp_path / "var", database_url=fresh_database.app_url, hub_name="hub.test")
    factory = make_session_factory(fresh_database.engine)
    with factory.begin() as s:
        hk = kit.hub_keys(s, settings)
        owner = kit.partner(s, "owner")
        c = kit.collection(s, hk, owner)
        cid = c.id
        kit.submit(s, c, owner, [{"type": "md5", "value": f"{i:032x}"} for i in range(1, 101)])
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_seal_in_process, args=(fresh_database.app_url, str(settings.var_dir), 3))
        for _ in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with factory() as s:
        rows = _batches(s, cid)
        assert [r.seq for r in rows] == list(range(1, 16))  # 100 signals / 7 per batch
        assert sum(r.adds for r in rows) == 100
        assert batches.head(s, cid).size == 15
        assert s.scalar(select(PendingChange.signal_id)) is None


_ROWS = [
    ("s-1", "add", 3, "pdq", "ab" * 32, 90, '["a","ncii:x/y"]', None),
    ("s-2", "add", 4, "md5", "cd" * 16, None, None, None),
    ("s-3", "remove", 5, "pdq", "ef" * 32, None, None, "withdrawn"),
    ("s-4", "remove", 6, None, None, None, None, "false positive"),
]


@pytest.mark.parametrize(
    "rows",
    [_ROWS, _ROWS[:2], _ROWS[2:], [("s-\u00e9", "add", 1, "md5", "ab" * 16, None, '["caf\u00e9"]', None)]],
    ids=["adds with tags and removes", "adds only", "removes only", "non-ascii falls back"],
)
def test_batches_encoded_from_rows_are_exactly_rfc8785(rows):
    from datetime import UTC, datetime

    at = datetime(2026, 1, 1, tzinfo=UTC)
    payload, adds, removes = batches._encode_rows("c-1", 2, "f" * 64, at, rows)
    expected = batches._batch_from("c-1", 2, "f" * 64, at, rows)
    assert payload == expected.to_bytes() and (adds, removes) == (len(expected.adds), len(expected.removes))


class _OddKeyId:
    """A signer whose key id needs escaping in JSON: the envelope takes audit's encoder."""

    def __init__(self, signer):
        self.key_id = 'k"\u00e9'
        self._signer = signer

    def sign(self, message: bytes) -> bytes:
        return self._signer.sign(message)


@pytest.mark.parametrize("odd_key_id", [False, True], ids=["template", "escaped key id falls back"])
def test_batch_envelopes_are_exactly_rfc8785(world, odd_key_id):
    from audit.dsse import sign_envelope

    signer = world[0].signer("batch")
    if odd_key_id:
        signer = _OddKeyId(signer)
    payload = b'{"adds":[],"collection":"c-1"}'
    expected = sign_envelope(BatchPayload.PAYLOAD_TYPE, payload, [signer]).to_json()
    assert batches.envelope_bytes(payload, signer) == expected


@pytest.mark.parametrize("max_entries", [1, 2, 50], ids=["one per batch", "two per batch", "all in one"])
def test_each_signal_is_marked_with_the_batch_that_carries_it(session, world, max_entries):
    hk, owner, c, trusted = world
    old = kit.submit(session, c, owner, [{"type": "md5", "value": f"{i:032x}"} for i in range(1, 4)]).new_ids
    kit.seal(session, hk)
    for sid in old[:2]:
        signals.retract(session, collection_id=c.id, signal_id=sid, partner_id=owner.id, actor=kit.actor_of(owner))
    new = kit.submit(session, c, owner, [{"type": "md5", "value": f"{i:032x}"} for i in range(4, 7)]).new_ids
    [sealed] = kit.seal(session, hk, max_entries=max_entries, now=kit.T0 + timedelta(minutes=1))
    assert (sealed.adds, sealed.removes) == (3, 2)
    carried: dict[str, tuple[str, int]] = {}
    ids: list[str] = []
    for b in _batches(session, c.id)[1:]:
        p = open_payload(trusted, bytes(b.envelope), BatchPayload)
        assert len(p.adds) + len(p.removes) <= max_entries
        carried.update({a.id: ("add", p.seq) for a in p.adds})
        carried.update({r.id: ("remove", p.seq) for r in p.removes})
        ids += sorted([a.id for a in p.adds] + [r.id for r in p.removes])
    assert ids == sorted(old[:2] + new)  # batches follow signal id order
    for sid in new:
        assert ("add", session.get(SignalSeq, sid).added_seq) == carried[sid]
    for sid in old[:2]:
        row = session.get(SignalSeq, sid)
        assert row.added_seq == 1 and ("remove", row.removed_seq) == carried[sid]
    assert session.scalar(select(PendingChange.signal_id)) is None


def test_a_collection_interleaved_with_another_seals_every_change_with_its_own_values(session, world):
    """Between one collection's adds lie another's signals: every batch still carries exactly its own changes."""
    import time

    hk, owner, a, trusted = world
    b = kit.collection(session, hk, owner)
    submitted: dict[str, dict[str, str]] = {a.id: {}, b.id: {}}
    for _ in range(3):
        for c, n in ((a, 1), (b, 7)):
            values = [kit.pdq() for _ in range(n)]
            ids = kit.submit(session, c, owner, [{"type": "pdq", "value": v} for v in values]).new_ids
            submitted[c.id].update(zip(ids, values, strict=True))
            time.sleep(0.002)  # the next submission's ids start at a later millisecond
    retracted = next(iter(submitted[b.id]))
    kit.seal(session, hk, max_entries=2)
    signals.retract(session, collection_id=b.id, signal_id=retracted, partner_id=owner.id, actor=kit.actor_of(owner))
    kit.submit(session, b, owner, [{"type": "pdq", "value": kit.pdq()}])
    kit.seal(session, hk, max_entries=2, now=kit.T0 + timedelta(minutes=1))
    for c in (a, b):
        added: dict[str, str] = {}
        removed: list[str] = []
        for row in _batches(session, c.id):
            p = open_payload(trusted, bytes(row.envelope), BatchPayload)
            for add in p.adds:
                added[add.id] = add.value
                assert session.get(SignalSeq, add.id).added_seq == p.seq
            removed += [r.id for r in p.removes]
        assert {k: v for k, v in added.items() if k in submitted[c.id]} == submitted[c.id]
        assert removed == ([retracted] if c is b else [])
    assert session.get(SignalSeq, retracted).removed_seq == len(_batches(session, b.id))


@pytest.mark.parametrize(
    ("op", "values"),
    [
        ("add", {"type": None, "value": None}),
        ("add", {"value": None}),
        ("remove", {"reason": None}),
    ],
    ids=["add without its entry", "add without its value", "remove without its reason"],
)
def test_a_pending_row_without_its_entry_cannot_be_written(session, world, op, values):
    """The sealer copies pending rows into batches as they are (migration 0015): a row lacking its copy is refused."""
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    hk, owner, c, _ = world
    [sid] = kit.submit(session, c, owner, [{"type": "md5", "value": "ab" * 16}]).new_ids
    if op == "remove":
        kit.seal(session, hk)
        signals.retract(session, collection_id=c.id, signal_id=sid, partner_id=owner.id, actor=kit.actor_of(owner))
    with pytest.raises(IntegrityError, match="ck_pending_changes_entry"), session.begin_nested():
        session.execute(update(PendingChange).where(PendingChange.signal_id == sid).values(**values))
    assert session.get(PendingChange, (c.id, sid)).op == op
