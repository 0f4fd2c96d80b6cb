"""A StopNCII-shaped upstream feeds a local collection through threatexchange's own StopNCIIAPI client.

The upstream is a small fake built from the client's own dataclasses (threatexchange's
`exchanges.clients.stopncii.api`), serialized as that API sends them: Active and Received hashes are added here
with their provenance, Withdrawn and Deleted ones removed, other signal types ignored, and a refused key or a
malformed page feeds nothing.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify, request
from sqlalchemy import func, select
from threatexchange.exchanges.clients.stopncii import api as stopncii

from audit.payloads import BatchPayload
from hub.feed.models import Batch, PendingChange, Signal
from hub.transparency.auditlog import Actor
from hub.upstreams import pull, service
from hub.upstreams.models import Upstream
from tests.conftest import _made_database
from tests.partners.realhub import RealHub
from tests.ports import serving

SUBSCRIPTION, FUNCTIONS = "sub-key-for-tests", "fn-key-for-tests"
Status, Kind = stopncii.StopNCIICaseStatus, stopncii.StopNCIISignalType


def _plain(value: Any) -> Any:
    """A dataclass of the client as the API sends it: enums by value, sets as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass
class FakeStopNCII:
    """FetchHashes over the client's `StopNCIIHashRecord`s, paged as StopNCII pages."""

    records: list[stopncii.StopNCIIHashRecord] = field(default_factory=list)
    broken: bool = False

    def app(self) -> Flask:
        app = Flask("fake-stopncii")

        @app.get("/v1/FetchHashes")
        def fetch() -> Any:
            if (request.headers.get("Ocp-Apim-Subscription-Key"), request.headers.get("x-functions-key")) != (
                SUBSCRIPTION, FUNCTIONS
            ):
                return jsonify({"message": "Access denied"}), 401
            if self.broken:
                return app.response_class('{"count": 3, "hashRecords": [', content_type="application/json")
            start = int(request.args["startTimestamp"])
            size = int(request.args["pageSize"])
            offset = int(request.args.get("nextPageToken") or 0)
            chosen = sorted((r for r in self.records if r.lastModtimestamp >= start),
                            key=lambda r: (r.lastModtimestamp, r.hashValue))
            page = chosen[offset : offset + size]
            more = offset + size < len(chosen)
            response = stopncii.FetchHashesResponse(
                count=len(page),
                nextPageToken=str(offset + size) if more else None,
                nextSetTimestamp=max([start, *(r.lastModtimestamp for r in page)]),
                hasMoreRecords=more,
                hashRecords=page,
            )
            return jsonify(_plain(dataclasses.asdict(response)))

        return app

    def put(self, kind: stopncii.StopNCIISignalType, value: str, status: stopncii.StopNCIICaseStatus, when: int
            ) -> None:
        self.records = [r for r in self.records if (r.signalType, r.hashValue) != (kind, value)]
        self.records.append(stopncii.StopNCIIHashRecord(when, kind, value, status, {"case-1": status}))


@pytest.fixture
def local(tmp_path: Path) -> Iterator[tuple[RealHub, str, FakeStopNCII, str]]:
    fake = FakeStopNCII()
    with serving(fake.app()) as served, _made_database() as db:
        url = f"{served}/v1"
        hub = RealHub.start(db.app_url, db.engine, tmp_path / "hub")
        cid = hub.create_collection("ncii-local")
        with hub.session() as s:
            service.add(s, name="stopncii", kind="stopncii", url=url, collection=cid,
                        partner=None, credentials={"subscription_key": SUBSCRIPTION, "functions_key": FUNCTIONS},
                        hub_secret=hub.keys(s).hub_secret, actor=Actor.operator())
        try:
            yield hub, cid, fake, url
        finally:
            db.engine.dispose()


def _pull(hub: RealHub) -> list[str]:
    return pull.pull_upstreams(hub.factory, datetime.now(UTC), settings=hub.settings)


def _active(hub: RealHub, cid: str) -> dict[str, str]:
    with hub.session() as s:
        rows = s.execute(select(Signal.value, Signal.type).where(Signal.collection_id == cid,
                                                                 Signal.status == "active"))
        return {v: t for v, t in rows}


def _hex(i: int, n: int = 64) -> str:
    return f"{i + 1:0{n}x}"


def test_a_stopncii_shaped_upstream_feeds_adds_and_removals(local):
    hub, cid, fake, _ = local
    # 1,000 PDQ hashes (two pages of the client's 800), one VideoMD5, one Received, and a type this hub lacks.
    for i in range(1000):
        fake.put(Kind.ImagePDQ, _hex(i), Status.Active, 1_000 + i)
    fake.put(Kind.VideoMD5, _hex(5000, 32), Status.Active, 2_500)
    fake.put(Kind.ImagePDQ, _hex(5001), Status.Received, 2_600)
    fake.put(Kind.VideoTMK, "ab" * 16, Status.Active, 2_700)
    assert _pull(hub) == ["stopncii: +1001 -0 (skipped 1) at 2700"]  # video_md5 is not a type of the collection
    assert set(_active(hub, cid)) == {_hex(i) for i in range(1000)} | {_hex(5001)}
    with hub.session() as s:
        provenance = {json.loads(p.provenance)["seq"] for p in s.scalars(select(PendingChange))}
        assert provenance == {*range(1_000, 2_000), 2_600}
    hub.seal(cid)
    with hub.session() as s:
        payload = BatchPayload.from_bytes(bytes(s.scalar(select(Batch.payload).where(Batch.collection_id == cid))))
    first = next(a for a in payload.adds if a.value == _hex(0))
    assert first.provenance is not None and first.provenance.to_dict() == {"upstream": "stopncii", "seq": 1_000}

    # A Withdrawn and a Deleted hash are removed here; a new one is added; the watermark only moves on.
    fake.put(Kind.ImagePDQ, _hex(3), Status.Withdrawn, 3_000)
    fake.put(Kind.ImagePDQ, _hex(4), Status.Deleted, 3_001)
    fake.put(Kind.ImagePDQ, _hex(6000), Status.Active, 3_002)
    assert _pull(hub) == ["stopncii: +1 -2 (skipped 0) at 3002"]
    active = _active(hub, cid)
    assert _hex(3) not in active and _hex(4) not in active and _hex(6000) in active
    with hub.session() as s:
        retracted = select(Signal.value, Signal.removal_reason).where(Signal.status == "retracted")
        reasons = {value: reason for value, reason in s.execute(retracted)}
        assert reasons == {_hex(3): "withdrawn", _hex(4): "upstream"}
    hub.seal(cid)
    with hub.session() as s:
        upstream = s.scalars(select(Upstream)).one()
        assert (upstream.position, upstream.last_error) == (3_002, None)


def test_a_refused_key_or_a_malformed_page_feeds_nothing(local):
    hub, _, fake, _ = local
    fake.put(Kind.ImagePDQ, _hex(1), Status.Active, 1_000)
    with hub.session() as s:
        s.scalars(select(Upstream)).one().credentials = service.sealed.seal(
            hub.keys(s).hub_secret, s.scalars(select(Upstream.id)).one(),
            {"subscription_key": "wrong", "functions_key": "wrong"})
    assert _pull(hub) == ["stopncii: failed"]
    with hub.session() as s:
        assert s.scalar(select(func.count()).select_from(Signal)) == 0
        assert "HTTP 401" in s.scalars(select(Upstream)).one().last_error
    assert "stopncii: FetchHashes failed" in hub.app.test_client().get("/readyz").get_json()["checks"]["upstreams"]

    with hub.session() as s:
        row = s.scalars(select(Upstream)).one()
        row.credentials = service.sealed.seal(hub.keys(s).hub_secret, row.id,
                                              {"subscription_key": SUBSCRIPTION, "functions_key": FUNCTIONS})
    fake.broken = True
    assert _pull(hub) == ["stopncii: failed"]
    with hub.session() as s:
        assert s.scalar(select(func.count()).select_from(Signal)) == 0
    fake.broken = False
    assert _pull(hub) == ["stopncii: +1 -0 (skipped 0) at 1000"]
    assert hub.app.test_client().get("/readyz").get_json()["checks"]["upstreams"] == "ok"
