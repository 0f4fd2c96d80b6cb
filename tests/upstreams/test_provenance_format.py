"""The optional `provenance` member of a batch add (formats.md, Batch): parsed strictly, written canonically,
absent from every add contributed at the hub (so their bytes are as before)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from audit.errors import FormatError
from audit.payloads import BatchAdd, BatchPayload, Provenance
from hub.feed import batches

ADD = {"id": "s-1", "type": "pdq", "value": "ab" * 32, "audit_seq": 7}


@pytest.mark.parametrize(
    "provenance",
    [{"upstream": "hub-a", "signal": "up-1", "seq": 3}, {"upstream": "stopncii", "seq": 1_700_000_000},
     {"upstream": "x"}],
    ids=["hashfed upstream", "stopncii upstream", "name only"],
)
def test_a_provenance_round_trips(provenance):
    add = BatchAdd.from_dict({**ADD, "provenance": provenance})
    assert add.provenance == Provenance.from_dict(provenance) and add.to_dict()["provenance"] == provenance


@pytest.mark.parametrize(
    "provenance",
    [{}, {"upstream": ""}, {"upstream": "a", "seq": -1}, {"upstream": "a", "seq": True}, {"upstream": "a", "x": 1},
     {"upstream": "a", "signal": 5}, "hub-a"],
    ids=["empty", "empty name", "negative seq", "bool seq", "unknown member", "signal not a string", "not an object"],
)
def test_a_malformed_provenance_is_refused(provenance):
    with pytest.raises(FormatError):
        BatchAdd.from_dict({**ADD, "provenance": provenance})


def test_the_sealer_writes_provenance_only_where_a_pending_add_has_one():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [("s-1", "add", 7, "pdq", "ab" * 32, None, None, None, None),
            ("s-2", "add", 8, "pdq", "cd" * 32, 90, None, None, '{"seq":3,"signal":"up-2","upstream":"hub-a"}')]
    payload, adds, removes = batches._encode_rows("c-1", 1, None, at, rows)
    parsed = BatchPayload.from_bytes(payload)
    assert (adds, removes) == (2, 0) and payload == parsed.to_bytes()
    assert parsed.adds[0].provenance is None and "provenance" not in parsed.adds[0].to_dict()
    assert parsed.adds[1].provenance == Provenance("hub-a", "up-2", 3)
