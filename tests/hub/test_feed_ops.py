"""The feed's operator side: retiring a hash over HTTP, the size-0 checkpoint of a new collection, the
`hashfed seal`, `cosign` and `collections ...` commands, the embedded scheduler, and row-level security."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text

from hub import rls
from hub.app import create_app
from hub.cli.main import main
from hub.config import Settings
from hub.db import make_session_factory
from hub.feed import batches, collections, signals
from hub.feed.models import Access, IdempotencyKey, PendingChange, RetiredValue, Signal, SignalSeq
from hub.identity.models import PartnerKind
from hub.ops.scheduler import start_embedded
from hub.transparency.models import AuditEntry
from tests.hub import factories
from tests.hub import feedkit as kit


@pytest.fixture
def gov(session, settings):
    keys = kit.hub_keys(session, settings)
    staff = factories.partner(session, kind=PartnerKind.GOVERNANCE, name="governance")
    return keys, factories.auth(factories.token(session, staff, ["governance"]))


# --- retiring a hash ---------------------------------------------------------------------------------------


def test_retiring_a_hash_removes_it_from_every_collection_and_denies_it(client, session, gov):
    keys, auth = gov
    a, b = kit.partner(session, "a"), kit.partner(session, "b")
    ca, cb = kit.collection(session, keys, a), kit.collection(session, keys, b)
    value = kit.pdq()
    published = kit.submit(session, ca, a, [{"type": "pdq", "value": value}]).new_ids[0]
    kit.seal(session, keys)
    unpublished = kit.submit(session, cb, b, [{"type": "pdq", "value": value}]).new_ids[0]
    r = client.post("/v1/governance/retired", json={"type": "pdq", "value": value.upper()}, headers=auth)
    assert r.status_code == 201, r.json
    assert sorted(r.json["removed"]) == sorted([published, unpublished])
    assert r.json["value"] == value
    entry = session.scalars(select(AuditEntry.entry).where(AuditEntry.seq == r.json["audit_seq"])).one()
    assert b'"signal.retire"' in entry and value.encode() not in entry
    # The published one is a remove in ca's next batch; the never-published one simply never appears.
    [sealed] = kit.seal(session, keys)
    assert (sealed.collection_id, sealed.adds, sealed.removes) == (ca.id, 0, 1)
    assert {s.status for s in session.scalars(select(Signal).where(Signal.value == value))} == {"retired"}
    assert session.scalar(select(func.count()).select_from(PendingChange)) == 0
    with pytest.raises(signals.ConflictError):
        kit.submit(session, cb, b, [{"type": "pdq", "value": value}])
    again = client.post("/v1/governance/retired", json={"type": "pdq", "value": value}, headers=auth)
    assert again.status_code == 409


@pytest.mark.parametrize(
    "body",
    [{"type": "pdq", "value": "ab" * 31}, {"type": "vpdq", "value": "ab" * 32}, {"type": "md5"}],
    ids=["short value", "unknown type", "no value"],
)
def test_a_bad_retirement_is_a_422_and_writes_nothing(client, session, gov, body):
    _keys, auth = gov
    before = session.scalar(select(func.count()).select_from(AuditEntry))
    r = client.post("/v1/governance/retired", json=body, headers=auth)
    assert r.status_code == 422
    assert session.scalar(select(func.count()).select_from(AuditEntry)) == before
    assert session.scalar(select(func.count()).select_from(RetiredValue)) == 0


def test_retiring_needs_the_governance_scope(client, session, settings):
    kit.hub_keys(session, settings)
    p = kit.partner(session)
    auth = factories.auth(factories.token(session, p, ["feed:read", "hashes:write"]))
    r = client.post("/v1/governance/retired", json={"type": "md5", "value": "a" * 32}, headers=auth)
    assert r.status_code == 403


# --- a new collection's checkpoint -------------------------------------------------------------------------


def test_governance_changes_a_collections_p_and_the_descriptor_is_signed_again(client, session, gov):
    _keys, auth = gov
    owner = kit.partner(session, "owner")
    made = client.post("/v1/governance/collections", json={"slug": "videos", "owner": owner.id, "vpdq_percent": 70,
                                                            "signal_types": ["pdq", "vpdq"]}, headers=auth)
    assert made.status_code == 201 and made.json["vpdq_percent"] == 70, made.json
    cid = made.json["id"]
    for bad in ({"vpdq_percent": 0}, {"vpdq_percent": 101}, {"vpdq_percent": "50"}, {"signal_types": ["tmk"]}):
        r = client.patch(f"/v1/governance/collections/{cid}", json=bad, headers=auth)
        assert r.status_code == 422, (bad, r.json)
    r = client.patch(f"/v1/governance/collections/{cid}", json={"vpdq_percent": 55}, headers=auth)
    assert r.status_code == 200 and (r.json["vpdq_percent"], r.json["descriptor_version"]) == (55, 2), r.json
    assert r.json["signal_types"] == ["pdq", "vpdq"]  # what the request left out stays


def test_a_new_collection_has_a_signed_cosigned_checkpoint_of_size_0(client, session, gov):
    from audit.note import SIG_COSIGNATURE, NoteVerifier, open_checkpoint

    keys, auth = gov
    owner = kit.partner(session, "owner")
    r = client.post("/v1/governance/collections", json={"slug": "fresh", "owner": owner.id}, headers=auth)
    assert r.status_code == 201, r.json
    cid = r.json["id"]
    read = factories.auth(factories.token(session, owner, ["feed:read"]))
    note = client.get(f"/v1/collections/{cid}/checkpoint", headers=read)
    assert note.status_code == 200
    cosigner = NoteVerifier("hub.test/timestamp", keys.signer("timestamp").public_key, SIG_COSIGNATURE)
    opened = open_checkpoint(
        note.get_data(as_text=True), f"hub.test/collections/{cid}", [keys.signer("checkpoint").public_key],
        [cosigner],
    )
    assert opened.checkpoint.size == 0
    page = client.get(f"/v1/collections/{cid}/batches?since_size=0", headers=read)
    assert page.status_code == 200 and page.json["size"] == 0 and page.json["batches"] == []


# --- commands ----------------------------------------------------------------------------------------------


def test_seal_cosign_and_collections_commands(fresh_database, tmp_path):
    settings = Settings(var_dir=tmp_path / "var", database_url=fresh_database.app_url, hub_name="hub.test")
    env = {
        "HASHFED_VAR_DIR": str(settings.var_dir),
        "HASHFED_DATABASE_URL": fresh_database.app_url,
        "HASHFED_HUB_NAME": "hub.test",
    }
    factory = make_session_factory(fresh_database.engine)
    with factory.begin() as s:
        keys = kit.hub_keys(s, settings)
        owner, other = kit.partner(s, "owner"), kit.partner(s, "other")
        headless = kit.collection(s, keys, owner).id  # made without a checkpoint: cosign signs its first
        owner_id, other_id = owner.id, other.id
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.output

    made = json.loads(run("collections", "create", "cli-made", "--owner", "owner", "--types", "pdq,md5", "--json"))
    cid = made["collection_id"]
    assert made == {"collection_id": cid, "slug": "cli-made", "owner": owner_id}  # the owner given by name
    granted = run("collections", "grant", "cli-made", "other", "--access", "reader", "--reason", "agreement signed")
    assert "granted reader on cli-made for other" in granted
    listed = run("collections", "list")
    assert f"{cid}  cli-made  ncii  types=pdq,md5  readers=2  contributors=1  descriptor v2" in listed
    revoked = run("collections", "revoke", cid, other_id, "--access", "reader", "--reason", "agreement ended")
    assert "revoked reader" in revoked
    bad = runner.invoke(main, ["collections", "create", "cli-made", "--owner", owner_id], env=env)
    assert bad.exit_code == 1 and "exists" in bad.output
    changed = json.loads(run("collections", "settings", "cli-made", "--vpdq-percent", "60", "--json"))
    assert (changed["vpdq_percent"], changed["descriptor_version"]) == (60, 4)
    assert "descriptor v4  pdq_threshold=31  vpdq_percent=60" in run("collections", "list")
    refused = runner.invoke(main, ["collections", "settings", cid, "--vpdq-percent", "0"], env=env)
    assert refused.exit_code == 1 and "invalid collection settings" in refused.output

    assert run("cosign") == "cosigned 1 checkpoints\n"  # the headless one; cli-made has one from creation
    with factory() as s:
        rls.set_tenant(s, rls.SYSTEM)
        assert {batches.head(s, c).size for c in (cid, headless)} == {0}
    assert run("seal") == "nothing pending\n"
    with factory.begin() as s:
        rls.set_tenant(s, rls.SYSTEM)
        c = collections.get(s, cid)
        kit.submit(s, c, s.get(type(owner), owner_id), [{"type": "md5", "value": f"{i:032x}"} for i in (1, 2, 3)])
    assert run("seal") == f"{cid}: sealed seq 1..1 (+3 -0), size 1\n"
    assert run("seal") == "nothing pending\n"


def test_the_embedded_scheduler_runs_the_jobs_and_stops(fresh_database, tmp_path):
    settings = Settings(var_dir=tmp_path / "var", database_url=fresh_database.app_url, hub_name="hub.test")
    factory = make_session_factory(fresh_database.engine)
    with factory.begin() as s:
        keys = kit.hub_keys(s, settings)
        owner = kit.partner(s, "owner")
        c = kit.collection(s, keys, owner)
        kit.submit(s, c, owner, [{"type": "md5", "value": "a" * 32}])
        cid = c.id
    app = create_app(settings, engine=fresh_database.engine)
    scheduler = start_embedded(app, settings)
    try:
        assert scheduler.running
        assert {"seal_pending", "refresh_cosignatures", "integrate_audit_log"} <= {
            j.id for j in scheduler.get_jobs()
        }
        deadline = time.monotonic() + 20
        size = 0
        while time.monotonic() < deadline and size < 1:
            time.sleep(0.2)
            with factory() as s:
                head = batches.head(s, cid)
                size = 0 if head is None else head.size
        assert size == 1  # sealed by the scheduler's first run
    finally:
        scheduler.shutdown(wait=True)
    assert not scheduler.running


# --- row-level security ------------------------------------------------------------------------------------


@pytest.mark.postgres_only
def test_row_level_security_isolates_idempotency_keys(database, connection, session, settings):
    keys = kit.hub_keys(session, settings)
    a, b = kit.partner(session, "a"), kit.partner(session, "b")
    ca = kit.collection(session, keys, a)
    signals.submit(
        session, collection_id=ca.id, partner_id=a.id, items=[{"type": "pdq", "value": kit.pdq()}],
        actor=kit.actor_of(a), idempotency_key="k-1", request_sha256="a" * 64, now=kit.T0,
    )
    session.flush()
    assert rls.tables_with_rls(connection).get("idempotency_keys") is True

    def visible() -> int:
        return session.scalar(select(func.count()).select_from(IdempotencyKey).where(IdempotencyKey.partner_id == a.id))

    rls.set_tenant(session, b.id)
    assert visible() == 0
    with session.begin_nested():
        assert session.execute(text("UPDATE idempotency_keys SET status = 500")).rowcount == 0
    with pytest.raises(Exception, match="row-level security"), session.begin_nested():
        session.execute(
            text(
                "INSERT INTO idempotency_keys (partner_id, key, request_sha256, status, response, created_at)"
                " VALUES (:a, 'forged', :d, 201, '\\x7b7d', now())"
            ),
            {"a": a.id, "d": "b" * 64},
        )
    rls.set_tenant(session, None)
    assert visible() == 0
    rls.set_tenant(session, a.id)
    assert visible() == 1
    # B replaying A's key is a new request for B, never A's stored response.
    rls.set_tenant(session, rls.SYSTEM)
    kit.grant(session, keys, ca, b, Access.CONTRIBUTOR)
    rls.set_tenant(session, b.id)
    replay = signals.submit(
        session, collection_id=ca.id, partner_id=b.id, items=[{"type": "md5", "value": "c" * 32}],
        actor=kit.actor_of(b), idempotency_key="k-1", request_sha256="a" * 64, now=kit.T0,
    )
    assert not replay.replayed and replay.body["accepted"] == 1


@pytest.mark.postgres_only
def test_row_level_security_on_signals_shows_members_their_collection_and_lets_only_owners_write(
    database, connection, session, settings
):
    keys = kit.hub_keys(session, settings)
    owner, reader, stranger = kit.partner(session, "owner"), kit.partner(session, "reader"), kit.partner(session, "x")
    c = kit.collection(session, keys, owner)
    kit.grant(session, keys, c, reader, Access.READER)
    kit.submit(session, c, owner, [{"type": "pdq", "value": kit.pdq()} for _ in range(3)])
    session.flush()
    assert rls.tables_with_rls(connection).get("signals") is True

    def visible() -> int:
        return session.scalar(select(func.count()).select_from(Signal).where(Signal.collection_id == c.id))

    rls.set_tenant(session, stranger.id)
    assert visible() == 0
    rls.set_tenant(session, None)
    assert visible() == 0
    rls.set_tenant(session, reader.id)
    assert visible() == 3  # a reader reads the collection's signals ...
    with session.begin_nested():  # ... but cannot change them
        assert session.execute(text("UPDATE signals SET status = 'retired'")).rowcount == 0
    with pytest.raises(Exception, match="row-level security"), session.begin_nested():
        session.execute(
            text(
                "INSERT INTO signals (id, collection_id, type, value, contributor_id, plain_claim, status, created_at) "
                "VALUES ('forged', :c, 'md5', :v, :p, true, 'active', now())"
            ),
            {"c": c.id, "v": "d" * 32, "p": owner.id},
        )
    rls.set_tenant(session, owner.id)
    with session.begin_nested():
        assert session.execute(text("UPDATE signals SET status = status")).rowcount == 3


@pytest.mark.postgres_only
def test_row_level_security_on_signal_seqs_follows_the_signal_and_lets_only_the_sealer_write(
    database, connection, session, settings
):
    keys = kit.hub_keys(session, settings)
    owner, reader, stranger = kit.partner(session, "owner"), kit.partner(session, "reader"), kit.partner(session, "x")
    c = kit.collection(session, keys, owner)
    kit.grant(session, keys, c, reader, Access.READER)
    ids = kit.submit(session, c, owner, [{"type": "pdq", "value": kit.pdq()} for _ in range(3)]).new_ids
    kit.seal(session, keys)
    assert rls.tables_with_rls(connection).get("signal_seqs") is True

    def visible() -> int:
        return session.scalar(select(func.count()).select_from(SignalSeq).where(SignalSeq.signal_id.in_(ids)))

    rls.set_tenant(session, stranger.id)
    assert visible() == 0
    rls.set_tenant(session, None)
    assert visible() == 0
    for partner in (reader, owner):  # whoever sees the signal sees when it was published ...
        rls.set_tenant(session, partner.id)
        assert visible() == 3
        with session.begin_nested():  # ... and nobody but the sealer changes it
            assert session.execute(text("UPDATE signal_seqs SET removed_seq = 1")).rowcount == 0
            assert session.execute(text("DELETE FROM signal_seqs")).rowcount == 0
        with pytest.raises(Exception, match="row-level security"), session.begin_nested():
            session.execute(text("INSERT INTO signal_seqs (signal_id, added_seq) VALUES ('forged', 1)"))
    rls.set_tenant(session, rls.SYSTEM)
    assert visible() == 3
