"""A batch-key rotation on a live hub: the running app signs with the new key at once, `/readyz` says when not.

The hub is the real one (tests/partners/realhub.py: a committed database, its WSGI app alive across the
rotation); the operator's command runs through `hashfed keys rotate`, the kit syncs through the HTTP feed.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from audit.dsse import Envelope
from audit.payloads import Snapshot, open_payload
from hub.cli.audit import keys_group
from hub.transparency import keys
from partners.client.mirror import Mirror
from tests.hub.keykit import (
    key_of,
    new_mirror,
    operator,
    root_key,
    seeded_collection,
    sync,
    trusted,
)
from tests.partners.realhub import FlaskTransport, RealHub

# A rotation takes effect in a running hub ---------------------------------------------------------------


def test_batch_key_rotation_signs_the_next_snapshot_without_a_restart(
    hub: RealHub, tmp_path: Path, mirrors: list[Mirror]
) -> None:
    cid = seeded_collection(hub)
    client = FlaskTransport(hub)
    assert sync(hub, new_mirror(tmp_path, mirrors, "before"), client).ok  # the app built and kept a snapshot
    old = key_of(hub, "batch")

    out = operator(hub, keys_group, "rotate", "batch", "--root", root_key(hub))
    new = key_of(hub, "batch")
    assert new != old and "key set v2" in out

    served = client.request("GET", f"/v1/collections/{cid}/snapshot", max_bytes=1 << 20)
    env = Envelope.from_json(served.body)
    assert [s.keyid for s in env.signatures] == [new]
    snapshot = open_payload(trusted(hub), env, Snapshot, datetime.now(UTC))
    assert snapshot.seq == 3
    fresh = new_mirror(tmp_path, mirrors, "after")
    report = sync(hub, fresh)
    assert report.ok, report.errors()
    assert report.results[0].snapshot_signals == 30 and len(list(fresh.active_signals(cid))) == 30
    ready = hub.app.test_client().get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"]["keys"] == "ok"


def test_readyz_reports_a_key_that_is_not_the_key_sets_current_one(hub: RealHub) -> None:
    seeded_collection(hub, 5)
    client = hub.app.test_client()
    assert client.get("/readyz").status_code == 200
    old = key_of(hub, "batch")
    operator(hub, keys_group, "rotate", "batch", "--root", root_key(hub))
    path = keys.role_key_path(hub.settings.keys_path, "batch")
    shutil.copy(path.with_name(f"batch.{old[:16]}.retired.pem"), path)  # the file swap did not happen
    r = client.get("/readyz")
    assert r.status_code == 503
    assert "batch key" in r.json["reason"] and "retired in key set v2" in r.json["reason"]


