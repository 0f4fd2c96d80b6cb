"""A kit that synced a collection while it was still empty receives the collection's first batches later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from partners.client.mirror import Mirror
from partners.client.sync import Syncer
from partners.client.verify import Policy
from tests.conftest import Database
from tests.partners.realhub import FlaskTransport, RealHub


@pytest.fixture
def hub(fresh_database: Database, tmp_path: Path) -> RealHub:
    return RealHub.start(fresh_database.app_url, fresh_database.engine, tmp_path / "var")


def test_collection_synced_while_empty_receives_its_first_batches(hub: RealHub, mirror: Mirror) -> None:
    cid = hub.create_collection("ncii-main")
    # The harness's keys are valid from the moment it started: times here are offsets from then.
    T0 = datetime.now(UTC).replace(microsecond=0)
    hub.cosign(cid, T0)  # the scheduler's freshness job signs the size-0 checkpoint
    clock = {"now": T0 + timedelta(minutes=1)}
    kit = Syncer(FlaskTransport(hub), mirror, hub.pin, Policy(page_limit=2), clock=lambda: clock["now"])

    first = kit.sync()
    assert first.ok, first.errors()
    assert mirror.heads().get(cid, 0) == 0

    hub.submit(cid, 30)
    hub.seal(cid, now=T0 + timedelta(minutes=5), max_entries=10)
    clock["now"] = T0 + timedelta(minutes=6)
    second = kit.sync()

    assert second.ok, second.errors()
    assert mirror.heads()[cid] == 3
    assert {s.signal_id for s in mirror.active_signals(cid)} == set(hub.ids[cid])
    state, active = mirror.state(cid)
    assert active == 30
    assert state.checkpoint is not None and state.checkpoint.size == 3
    assert state.frontier.root() == state.checkpoint.root

    # and it goes on with the delta feed from there
    hub.submit(cid, 5)
    hub.seal(cid, now=T0 + timedelta(minutes=10))
    clock["now"] = T0 + timedelta(minutes=11)
    third = kit.sync()
    assert third.ok, third.errors()
    assert mirror.heads()[cid] == 4
    assert len(list(mirror.active_signals(cid))) == 35
