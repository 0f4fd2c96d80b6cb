"""The StopNCII-compatible facade, driven by threatexchange's own StopNCII client against a hub on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from threatexchange.exchanges.clients.stopncii import api as stopncii
from threatexchange.exchanges.collab_config import CollaborationConfigBase
from threatexchange.exchanges.impl.stop_ncii_api import StopNCIISignalExchangeAPI
from werkzeug.serving import make_server

from hub import rls
from hub.app import create_app
from hub.cli.main import main
from hub.compat import service as compat
from hub.compat.models import ApiKey
from hub.config import Settings
from hub.db import make_session_factory
from hub.feed import signals
from hub.feed.models import Access, Collection, Signal
from hub.identity.models import Partner
from hub.reports.models import FalsePositiveVote, Report, ReportOutcome, SignalFlag
from hub.transparency import auditlog
from hub.transparency.auditlog import Actor
from hub.transparency.keys import HubKeys, ensure_hub_secret
from hub.transparency.models import AuditEntry
from tests.hub import feedkit as kit
from tests.ports import free_port

PREFIX = "/compat/stopncii/v1"


@dataclass
class World:
    url: str
    factory: sessionmaker[Session]
    keys: HubKeys
    settings: Settings
    owner: Partner
    reader: Partner
    c: Collection
    hidden: Collection
    pdq: dict[str, str]  # value -> signal id, active in c
    md5: dict[str, str]
    hidden_values: set[str]
    api_key: str
    key_id: str
    t1: datetime

    def client(self, key: str | None = None) -> stopncii.StopNCIIAPI:
        key = key or self.api_key
        return stopncii.StopNCIIAPI(key, key, {e: key for e in stopncii.StopNCIIEndpoint}, base_url_override=self.url)

    def raw(self, params: dict[str, object], key: str | None = None) -> requests.Response:
        key = key or self.api_key
        headers = {"Ocp-Apim-Subscription-Key": key, "x-functions-key": key}
        return requests.get(f"{self.url}/FetchHashes", params=params, headers=headers, timeout=10)


def _after_latest_entry(session: Session, hours: int) -> datetime:
    """A seal time after every audit entry so far: entry times never go back, so a seal gets this time exactly."""
    latest = session.scalar(select(func.max(AuditEntry.recorded_at)))
    assert latest is not None
    return latest.replace(microsecond=0) + timedelta(hours=hours)


@contextmanager
def _serve(settings: Settings, engine) -> Iterator[str]:
    server = make_server("127.0.0.1", int(settings.base_url.rsplit(":", 1)[1]), create_app(settings, engine=engine),
                         threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield settings.base_url + PREFIX
    finally:
        server.shutdown()
        server.server_close()


def _settings(tmp_path, url: str, **limits: str) -> Settings:
    port = free_port()
    return Settings(var_dir=tmp_path / "var", database_url=url, base_url=f"http://127.0.0.1:{port}",
                    hub_name="hub.test", **limits)  # type: ignore[arg-type]


def _build(s: Session, settings: Settings) -> dict:
    keys = kit.hub_keys(s, settings)
    owner = kit.partner(s, "owner")
    reader = kit.partner(s, "reader")
    c = kit.collection(s, keys, owner, types=("pdq", "md5", "sha256", "video_md5"))
    hidden = kit.collection(s, keys, owner)
    kit.grant(s, keys, c, reader)
    kit.grant(s, keys, c, reader, Access.CONTRIBUTOR)
    pdq_values = [kit.pdq() for _ in range(23)]
    md5_values = [kit.pdq()[:32] for _ in range(2)]
    # sha256 and an image's md5: StopNCII has no name for them, so they are not served
    unnamed = [{"type": "sha256", "value": kit.pdq()}, {"type": "md5", "value": kit.pdq()[:32]}]
    items = [{"type": "pdq", "value": v} for v in pdq_values]
    items += [{"type": "video_md5", "value": v} for v in md5_values]
    # Two seals an hour apart: the last three pdq hashes are sealed in the second.
    first = kit.submit(s, c, owner, [*items[3:], *unnamed])
    hidden_values = {kit.pdq() for _ in range(3)}
    kit.submit(s, hidden, owner, [{"type": "pdq", "value": v} for v in hidden_values])
    kit.seal(s, keys, now=_after_latest_entry(s, 1))
    second = kit.submit(s, c, owner, items[:3])
    t1 = _after_latest_entry(s, 1)
    kit.seal(s, keys, now=t1)
    ids = second.new_ids + first.new_ids[:22]
    issued = compat.create_key(s, reader.id, scopes=None, collection=None,
                               hub_secret=ensure_hub_secret(settings.keys_path), actor=Actor.operator())
    return dict(
        keys=keys, owner=owner, reader=reader, c=c, hidden=hidden,
        pdq=dict(zip(pdq_values, ids[:23], strict=True)), md5=dict(zip(md5_values, ids[23:25], strict=True)),
        hidden_values=hidden_values, api_key=issued.secret, key_id=issued.key.id, t1=t1,
    )


@pytest.fixture
def world(fresh_database, tmp_path) -> Iterator[World]:
    settings = _settings(tmp_path, fresh_database.app_url)
    factory = make_session_factory(fresh_database.engine)
    with factory.begin() as s:
        built = _build(s, settings)
    with _serve(settings, fresh_database.engine) as url:
        yield World(url=url, factory=factory, settings=settings, **built)


def _pages(api: stopncii.StopNCIIAPI, start: int, size: int) -> list[stopncii.FetchHashesResponse]:
    pages, token = [], ""
    while True:
        page = api.fetch_hashes(page_size=size, start_timestamp=start, next_page=token)
        pages.append(page)
        if not page.hasMoreRecords:
            return pages
        token = page.nextPageToken or ""


def test_the_client_fetches_every_active_hash_across_pages_then_resumes_and_sees_removals(world):
    pages = _pages(world.client(), stopncii.StopNCIIAPI.DEFAULT_START_TIME, 10)
    records = [r for p in pages for r in p.hashRecords]
    assert len(pages) == 3 and [p.count for p in pages] == [10, 10, 5]
    assert {r.hashValue for r in records if r.signalType == stopncii.StopNCIISignalType.ImagePDQ} == set(world.pdq)
    assert {r.hashValue for r in records if r.signalType == stopncii.StopNCIISignalType.VideoMD5} == set(world.md5)
    assert len(records) == 25  # each once; the sha256 hash and the unreadable collection are not served
    assert all(r.hashStatus == stopncii.StopNCIICaseStatus.Active and r.caseNumbers == {} for r in records)
    t1 = int(world.t1.timestamp())
    last_second = {r.hashValue for r in records if r.lastModtimestamp == t1}
    assert last_second == set(list(world.pdq)[:3])
    assert all(r.lastModtimestamp == t1 - 3600 for r in records if r.hashValue not in last_second)
    marks = [p.nextSetTimestamp for p in pages]
    assert marks == sorted(marks) and marks[-1] == t1

    # Through threatexchange's exchange: its checkpoint is the last page's nextSetTimestamp.
    collab = CollaborationConfigBase("hub", True, StopNCIISignalExchangeAPI)
    exchange = StopNCIISignalExchangeAPI(collab, world.client())
    deltas = list(exchange.fetch_iter([], None))
    checkpoint = deltas[-1].checkpoint
    assert checkpoint.update_time == t1
    assert {v for d in deltas for (_, v) in d.updates} == set(world.pdq) | set(world.md5)

    # New hashes arrive, one is withdrawn by its contributor and one retired by staff, in a later seal.
    new_values = [kit.pdq() for _ in range(3)]
    withdrawn, retired = list(world.pdq)[10], list(world.pdq)[11]
    with world.factory.begin() as s:
        rls.set_tenant(s, rls.SYSTEM)
        kit.submit(s, world.c, world.owner, [{"type": "pdq", "value": v} for v in new_values])
        signals.retract(s, collection_id=world.c.id, signal_id=world.pdq[withdrawn], partner_id=world.owner.id,
                        actor=kit.actor_of(world.owner))
        signals.retire(s, collection_id=world.c.id, signal_id=world.pdq[retired], actor=Actor.operator())
        t2 = _after_latest_entry(s, 1)
        kit.seal(s, world.keys, now=t2)

    resumed = list(exchange.fetch_iter([], checkpoint))
    seen = {v for d in resumed for (_, v) in d.updates}
    # What changed after the checkpoint, and again the records of the checkpoint's own second: a seal of that
    # second may have been in flight when the client read, so resuming includes it.
    assert seen == {*new_values, withdrawn, retired} | last_second
    assert resumed[-1].checkpoint.update_time == int(t2.timestamp()) >= checkpoint.update_time

    # The client release tests the status on the wrong field, so the raw records are checked too.
    raw = world.raw({"startTimestamp": checkpoint.update_time + 1, "pageSize": 100})
    assert raw.status_code == 200
    body = raw.json()
    by_value = {r["hashValue"]: r for r in body["hashRecords"]}
    assert by_value[withdrawn]["hashStatus"] == "Withdrawn"
    assert by_value[retired]["hashStatus"] == "Deleted"
    assert {by_value[v]["hashStatus"] for v in new_values} == {"Active"}
    assert all(r["caseNumbers"] == {} and r["CSPFeedbacks"] == [] for r in body["hashRecords"])
    assert body["nextSetTimestamp"] == int(t2.timestamp()) and body["hasMoreRecords"] is False
    assert not world.hidden_values & set(by_value)

    # A start after every change gives nothing and keeps the watermark where the client put it.
    later = int(t2.timestamp()) + 10
    empty = world.client().fetch_hashes(start_timestamp=later)
    assert empty.hashRecords == [] and empty.nextSetTimestamp == later and not empty.hasMoreRecords


def test_pages_hold_still_while_hashes_arrive_and_batches_are_sealed(world):
    client = world.client()
    first = client.fetch_hashes(page_size=10, start_timestamp=10)
    assert first.hasMoreRecords and first.count == 10

    # Between two pages: new hashes, and staff quarantine one already served, all sealed at once.
    new_values = [kit.pdq() for _ in range(4)]
    quarantined = next(r.hashValue for r in first.hashRecords if r.hashValue in world.pdq)
    with world.factory.begin() as s:
        rls.set_tenant(s, rls.SYSTEM)
        kit.submit(s, world.c, world.owner, [{"type": "pdq", "value": v} for v in new_values])
        seq = auditlog.record(s, Actor.operator(), "test.quarantine", f"signal/{world.pdq[quarantined]}").seq
        signals.withhold(s, s.get(Signal, world.pdq[quarantined]), seq, _after_latest_entry(s, 0))
        t2 = _after_latest_entry(s, 1)
        kit.seal(s, world.keys, now=t2)

    rest, token = [], first.nextPageToken or ""
    while token:
        page = client.fetch_hashes(page_size=10, start_timestamp=10, next_page=token)
        rest.append(page)
        token = page.nextPageToken or ""
    records = [*first.hashRecords, *(r for p in rest for r in p.hashRecords)]
    old = [r.hashValue for r in records if r.lastModtimestamp < int(t2.timestamp())]
    assert sorted(old) == sorted([*world.pdq, *world.md5])  # every record of the first seals exactly once
    changed = {r.hashValue: r.hashStatus for r in records if r.lastModtimestamp == int(t2.timestamp())}
    assert changed == {**dict.fromkeys(new_values, stopncii.StopNCIICaseStatus.Active),
                       quarantined: stopncii.StopNCIICaseStatus.Deleted}
    marks = [first.nextSetTimestamp, *(p.nextSetTimestamp for p in rest)]
    assert marks == sorted(marks) and marks[-1] == int(t2.timestamp())


def _reports(world: World) -> dict[str, str]:
    with world.factory() as s:
        rls.set_tenant(s, rls.SYSTEM)
        rows = s.execute(
            select(Report.signal_id, ReportOutcome.outcome)
            .join(ReportOutcome, (ReportOutcome.partner_id == Report.partner_id)
                  & (ReportOutcome.report_id == Report.report_id))
            .where(Report.partner_id == world.reader.id)
        ).all()
        return {sid: outcome for sid, outcome in rows}


def test_feedback_becomes_audited_reports_and_submitted_hashes_become_signals(world):
    values = list(world.pdq)
    client = world.client()
    client.submit_feedbacks({
        (stopncii.StopNCIISignalType.ImagePDQ, values[0]): stopncii.StopNCIICSPFeedback(
            stopncii.StopNCIICSPFeedbackValue.Blocked),
        (stopncii.StopNCIISignalType.ImagePDQ, values[1]): stopncii.StopNCIICSPFeedback(
            stopncii.StopNCIICSPFeedbackValue.NotBlocked),
        (stopncii.StopNCIISignalType.ImagePDQ, values[2]): stopncii.StopNCIICSPFeedback(
            stopncii.StopNCIICSPFeedbackValue.PendingReview),
    })
    assert _reports(world) == {
        world.pdq[values[0]]: "blocked",
        world.pdq[values[1]]: "no_action",  # NotBlocked: a no_action report ...
        world.pdq[values[2]]: "pending_review",
    }
    with world.factory() as s:
        rls.set_tenant(s, rls.SYSTEM)
        entry = s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)).one()
        text = bytes(entry.entry).decode()
        assert '"reports.submit"' in text and f"apikey:{world.key_id}" in text
        assert not any(v in text for v in values)  # no raw hash values in the audit log
        # ... and the partner's false-positive vote, counted as a false_positive report's and audited with it.
        assert f'"signal":"{world.pdq[values[1]]}"' in text and '"false_positive_votes"' in text
        flag = s.get(SignalFlag, world.pdq[values[1]])
        assert flag is not None and flag.false_positive_partners == 1
        vote = s.get(FalsePositiveVote, (world.reader.id, world.pdq[values[1]]))
        assert vote is not None and vote.audit_seq == entry.seq
        assert s.get(SignalFlag, world.pdq[values[0]]) is None

    # Once per partner and signal: NotBlocked again is not a second vote.
    client.submit_feedback(stopncii.StopNCIISignalType.ImagePDQ, values[1],
                           stopncii.StopNCIICSPFeedbackValue.NotBlocked)
    with world.factory() as s:
        rls.set_tenant(s, rls.SYSTEM)
        assert s.get(SignalFlag, world.pdq[values[1]]).false_positive_partners == 1
        entry = s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)).one()
        assert '"false_positive_votes"' not in bytes(entry.entry).decode()
    client.submit_feedback(stopncii.StopNCIISignalType.ImagePDQ, values[0], stopncii.StopNCIICSPFeedbackValue.Blocked)

    # A hash the partner cannot read is refused, and nothing is written.
    with pytest.raises(requests.HTTPError) as refused:
        client.submit_feedback(stopncii.StopNCIISignalType.ImagePDQ, next(iter(world.hidden_values)),
                               stopncii.StopNCIICSPFeedbackValue.Blocked)
    assert refused.value.response.status_code == 422
    assert set(_reports(world)) == {world.pdq[v] for v in values[:3]}

    # SubmitHashes: the client's own shapes (it sends str() of its enum) become signals of the key's collection.
    fresh = kit.pdq()
    client.submit_hash(stopncii.StopNCIISignalType.ImagePDQ, fresh)
    with world.factory() as s:
        rls.set_tenant(s, rls.SYSTEM)
        row = s.scalars(select(Signal).where(Signal.value == fresh)).one()
        assert (row.collection_id, row.contributor_id, row.status) == (world.c.id, world.reader.id, "active")


def test_a_wrong_key_gets_401_and_learns_nothing(world):
    good = world.raw({"startTimestamp": 10})
    assert good.status_code == 200 and good.json()["count"] == 25
    with world.factory.begin() as s:
        rls.set_tenant(s, rls.SYSTEM)
        revoked = compat.create_key(s, world.reader.id, scopes=None, collection=None,
                                    hub_secret=ensure_hub_secret(world.settings.keys_path), actor=Actor.operator())
        compat.revoke_key(s, revoked.key.id, actor=Actor.operator())
        read_only = compat.create_key(s, world.reader.id, scopes=["feed:read"], collection=None,
                                      hub_secret=ensure_hub_secret(world.settings.keys_path), actor=Actor.operator())
    bodies = set()
    for key in ("hfk_wrong", revoked.secret, world.api_key[:-1]):
        response = world.raw({"startTimestamp": 10}, key=key)
        assert response.status_code == 401
        assert "hashRecords" not in response.json()
        bodies.add(response.text)
    no_key = requests.get(f"{world.url}/FetchHashes", params={"startTimestamp": 10}, timeout=10)
    assert no_key.status_code == 401
    bodies.add(no_key.text)
    assert len(bodies) == 1  # the same answer whatever was wrong
    with pytest.raises(requests.HTTPError) as denied:
        world.client("hfk_wrong").fetch_hashes()
    assert denied.value.response.status_code == 401

    # A key without reports:write may fetch but not report.
    assert world.raw({"startTimestamp": 10}, key=read_only.secret).status_code == 200
    with pytest.raises(requests.HTTPError) as forbidden:
        world.client(read_only.secret).submit_feedback(
            stopncii.StopNCIISignalType.ImagePDQ, next(iter(world.pdq)), stopncii.StopNCIICSPFeedbackValue.Blocked)
    assert forbidden.value.response.status_code == 403
    assert _reports(world) == {}


# One database for the whole table: each case is a read that writes nothing.
BAD_PARAMETERS = {
    "timestamp not a number": {"startTimestamp": "soon"},
    "negative timestamp": {"startTimestamp": -1},
    "page size zero": {"pageSize": 0},
    "page size too large": {"pageSize": 5000},
    "page token not ours": {"nextPageToken": "x"},
}


def test_bad_parameters_are_400(world):
    statuses = {name: world.raw(params).status_code for name, params in BAD_PARAMETERS.items()}
    assert statuses == dict.fromkeys(BAD_PARAMETERS, 400)


def test_guessing_keys_is_rate_limited_with_retry_after(fresh_database, tmp_path):
    settings = _settings(tmp_path, fresh_database.app_url, token_rate_limit="3/minute")
    with _serve(settings, fresh_database.engine) as url:
        statuses = []
        for _ in range(4):
            response = requests.get(f"{url}/FetchHashes", headers={"Ocp-Apim-Subscription-Key": "hfk_guess"},
                                    timeout=10)
            statuses.append(response.status_code)
        assert statuses == [401, 401, 401, 429]
        assert int(response.headers["Retry-After"]) > 0


def test_the_operator_creates_and_revokes_keys_with_the_cli(world):
    env = {"HASHFED_VAR_DIR": str(world.settings.var_dir), "HASHFED_DATABASE_URL": world.settings.database_url,
           "HASHFED_HUB_NAME": "hub.test"}
    runner = CliRunner()
    made = runner.invoke(main, ["client", "create-api-key", "reader", "--scope", "feed:read", "--json"], env=env)
    assert made.exit_code == 0, made.output
    issued = json.loads(made.output)
    assert issued["scopes"] == "feed:read" and issued["api_key"].startswith("hfk_")
    with world.factory() as s:
        rls.set_tenant(s, rls.SYSTEM)
        stored = s.get(ApiKey, issued["key_id"])
        assert stored is not None and issued["api_key"] not in repr(vars(stored))  # a digest only
    assert world.raw({"startTimestamp": 10}, key=issued["api_key"]).status_code == 200

    refused = runner.invoke(main, ["client", "create-api-key", "owner", "--scope", "governance"], env=env)
    assert refused.exit_code != 0

    revoked = runner.invoke(main, ["client", "revoke-api-key", issued["key_id"]], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert world.raw({"startTimestamp": 10}, key=issued["api_key"]).status_code == 401
    listed = runner.invoke(main, ["client", "api-keys", "reader"], env=env)
    assert f"{issued['key_id']}\t{world.reader.id}\trevoked\tfeed:read" in listed.output
    again = runner.invoke(main, ["client", "revoke-api-key", issued["key_id"]], env=env)
    assert again.exit_code != 0 and "already revoked" in again.output
