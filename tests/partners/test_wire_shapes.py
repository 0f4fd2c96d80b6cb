"""One wire shape per response: the kit accepts exactly what the hub serves (docs/protocol.md) and refuses
every other shape, wrapped, renamed, bare or line-delimited, as a format error, with its mirror unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from audit.canonical import canonical_json
from partners.client import errors
from partners.client.mirror import Mirror
from partners.client.sync import Syncer, parse_chunk
from partners.client.transport import Response
from partners.client.verify import Policy
from tests.partners.fakehub import FakeHub, FakeTransport

Edit = Callable[[bytes], bytes]


@pytest.fixture
def hub() -> FakeHub:
    h = FakeHub()
    h.add_collection("c1")
    h.seal("c1", adds=3)
    h.seal("c1", adds=2)
    return h


def _json_edit(fn: Callable[[Any], Any]) -> Edit:
    return lambda body: json.dumps(fn(json.loads(body))).encode()


def _rename(old: str, new: str) -> Edit:
    return _json_edit(lambda d: {(new if k == old else k): v for k, v in d.items()})


def _ndjson_page(body: bytes) -> bytes:
    """The page as JSON lines: the checkpoint object, then one envelope per line."""
    page = json.loads(body)
    lines = [{k: v for k, v in page.items() if k != "batches"}, *page["batches"]]
    return b"\n".join(json.dumps(line).encode() for line in lines) + b"\n"


# (path suffix of the response edited, how; snapshots served?, whether the kit lists collections itself)
CASES: list[tuple[str, Edit, bool, bool]] = [
    ("/v1/collections", _json_edit(lambda items: {"collections": items}), False, True),
    ("/v1/collections", _json_edit(lambda items: {"items": items}), False, True),
    ("/v1/collections", _json_edit(lambda items: [i["id"] for i in items]), False, True),
    ("/v1/collections", _json_edit(lambda items: [{**i, "extra": 1} for i in items]), False, True),
    ("/v1/collections/c1", _json_edit(lambda env: {"descriptor": env}), False, False),
    ("/batches", _rename("proof", "consistency"), False, False),
    ("/batches", _json_edit(lambda d: {**d, "proof": {"hashes": d["proof"]}}), False, False),
    ("/batches", _rename("batches", "envelopes"), False, False),
    ("/batches", _json_edit(lambda d: {k: v for k, v in d.items() if k != "size"}), False, False),
    ("/batches", _json_edit(lambda d: {k: v for k, v in d.items() if k != "since_size"}), False, False),
    ("/batches", _json_edit(lambda d: {**d, "since_size": d["since_size"] + 1}), False, False),
    ("/batches", _json_edit(lambda d: {**d, "checkpoint": {"note": d["checkpoint"]}}), False, False),
    ("/batches", _json_edit(lambda d: {**d, "extra": None}), False, False),
    ("/batches", _json_edit(lambda d: d["batches"]), False, False),
    ("/batches", _ndjson_page, False, False),
    ("/snapshot", _json_edit(lambda env: {"snapshot": env}), True, False),
    ("/snapshot", _json_edit(lambda env: {"snapshot": env, "checkpoint": "", "proof": []}), True, False),
]
IDS = [
    "collection list wrapped in collections",
    "collection list wrapped in items",
    "collection list of bare ids",
    "collection list item with an unknown key",
    "descriptor wrapped in descriptor",
    "page proof named consistency",
    "page proof as an object of hashes",
    "page envelopes named envelopes",
    "page without size",
    "page without since_size",
    "page for another since_size",
    "page checkpoint as an object",
    "page with an unknown key",
    "page as a bare list of envelopes",
    "page as NDJSON lines",
    "snapshot wrapped in snapshot",
    "snapshot wrapped with a checkpoint and proof",
]


@pytest.mark.parametrize(("suffix", "edit", "snapshots", "listed"), CASES, ids=IDS)
def test_a_shape_the_hub_does_not_serve_is_refused(
    hub: FakeHub, mirror: Mirror, suffix: str, edit: Edit, snapshots: bool, listed: bool
) -> None:
    t = FakeTransport(hub, snapshots=snapshots)

    def override(method: str, path: str, params: Any, body: Any) -> Response | None:
        if method != "GET" or not path.endswith(suffix):
            return None
        served = t.serve(method, path, params, body)
        return Response(served.status, edit(served.body), served.headers)

    t.override = override
    before = mirror.dump()
    syncer = Syncer(t, mirror, hub.pin, Policy(), clock=lambda: hub.now, only=() if listed else ("c1",))
    report = syncer.sync()
    assert not report.ok
    assert isinstance(report.errors()[0], errors.MalformedResponseError), repr(report.errors()[0])
    assert mirror.dump() == before


def test_the_shapes_the_hub_serves_are_accepted(hub: FakeHub, mirror: Mirror) -> None:
    for snapshots in (True, False):
        report = Syncer(FakeTransport(hub, snapshots=snapshots), mirror, hub.pin, clock=lambda: hub.now).sync()
        assert report.ok, report.errors()
        assert mirror.heads() == {"c1": 2}


ADD = {"audit_seq": 1, "id": "s1", "type": "pdq", "value": "f" * 64}
CHUNK = {"collection": "c1", "seq": 2, "index": 0, "signals": [ADD]}

CHUNK_CASES: list[bytes] = [
    canonical_json([ADD]),
    canonical_json(ADD) + b"\n" + canonical_json({**ADD, "id": "s2"}) + b"\n",
    canonical_json({k: v for k, v in CHUNK.items() if k != "index"}),
    canonical_json({**CHUNK, "count": 1}),
    canonical_json({**CHUNK, "index": 1}),
    canonical_json({**CHUNK, "seq": 1}),
    canonical_json({**CHUNK, "collection": "c2"}),
    canonical_json({**CHUNK, "signals": {"s1": ADD}}),
    canonical_json({**CHUNK, "signals": [{k: v for k, v in ADD.items() if k != "audit_seq"}]}),
    canonical_json({**CHUNK, "signals": [{**ADD, "case_ref": "x"}]}),
]
CHUNK_IDS = [
    "bare list of signals",
    "NDJSON, one signal per line",
    "no index",
    "an unknown key",
    "another index",
    "another seq",
    "another collection",
    "signals as an object",
    "signal without audit_seq",
    "signal with an unknown key",
]


@pytest.mark.parametrize("data", CHUNK_CASES, ids=CHUNK_IDS)
def test_a_chunk_shape_the_hub_does_not_serve_is_refused(data: bytes) -> None:
    with pytest.raises(errors.SnapshotError):
        parse_chunk(data, "c1", 2, 0)


def test_the_chunk_the_hub_serves_is_accepted(hub: FakeHub) -> None:
    _env, chunks = hub.snapshot("c1")
    signals = parse_chunk(chunks[0], "c1", 2, 0)
    assert [s.id for s in signals] == ["s1", "s2", "s3", "s4", "s5"]
    assert signals[0].quality == 90
