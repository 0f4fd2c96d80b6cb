"""The hub's one hand-written canonical JSON, the batch payload template, is RFC 8785 to the byte.

`hub.feed.batches._encode_rows` writes a batch payload from pending rows with f-strings (the sealing hot path)
and falls back to audit's encoder for anything its template cannot write. For arbitrary payloads its bytes
equal `rfc8785.dumps` of the same document, or both refuse; for plain ones the template itself writes them.
The audit entry is cut around its seq and time from audit's encoder: the parts joined are RFC 8785 too.
Examples are derandomized and bounded so that every run checks the same cases.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
import rfc8785
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audit.canonical import format_time
from audit.errors import FormatError
from audit.payloads import AuditEntry
from hub.feed import batches
from hub.transparency.auditlog import _entry_parts

DETERMINISTIC = settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

_LIMIT = 2**53 - 1  # RFC 8785 3.2.2.3: the integers JSON numbers hold exactly
_PLAIN = "ABCXYZabcxyz0189_.:/+=- "
# Characters that need escaping or are multi-byte in UTF-8: quotes, backslash, controls, DEL, line separators,
# non-ASCII, non-BMP (a surrogate pair in UTF-16, four bytes in UTF-8).
_SPECIAL = ['"', "\\", "\x00", "\x08", "\t", "\n", "\x1f", "\x7f", "\u00e9", "\u2028", "\ufeff", "\U0001f600"]

plain_text = st.text(alphabet=_PLAIN, max_size=12)
any_text = st.one_of(plain_text, st.text(max_size=12), st.text(alphabet=st.sampled_from(_SPECIAL), min_size=1))
edge_ints = st.sampled_from([0, 1, -1, _LIMIT, -_LIMIT, _LIMIT + 1, -_LIMIT - 1, 2**63 - 1, -(2**63)])
in_range_ints = st.one_of(st.integers(min_value=0, max_value=_LIMIT), st.sampled_from([0, 1, _LIMIT]))
some_ints = st.one_of(in_range_ints, edge_ints)
times = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=0))


@st.composite
def documents(
    draw: Any, text: Any, ints: Any, tag_text: Any = None
) -> tuple[tuple[str, int, str | None, datetime, list[Any]], dict[str, Any]]:
    """Pending rows and the batch document they stand for, built independently of the hub's code."""
    seq = draw(st.one_of(st.just(1), ints.filter(lambda n: n >= 1)))
    prev = None if seq == 1 else draw(st.one_of(st.just("f" * 64), text))
    now = draw(times)
    collection = draw(text)
    rows: list[Any] = []
    adds: list[dict[str, Any]] = []
    removes: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        sid, audit_seq = draw(text), draw(ints)
        if draw(st.booleans()):
            kind, value = draw(text), draw(text)
            quality = draw(st.one_of(st.none(), ints))
            tags = draw(st.one_of(st.none(), st.lists(text if tag_text is None else tag_text, max_size=3)))
            # As signals.py stores tags, and a form with \u escapes that the template cannot copy.
            stored = None if tags is None else json.dumps(tags, separators=(",", ":"), ensure_ascii=draw(st.booleans()))
            rows.append((sid, "add", audit_seq, kind, value, quality, stored, None))
            entry: dict[str, Any] = {"audit_seq": audit_seq, "id": sid, "type": kind, "value": value}
            if quality is not None:
                entry["quality"] = quality
            if tags is not None:
                entry["tags"] = tags
            adds.append(entry)
        else:
            reason = draw(text)
            rows.append((sid, "remove", audit_seq, None, None, None, None, reason))
            removes.append({"audit_seq": audit_seq, "id": sid, "reason": reason})
    document = {
        "adds": adds,
        "collection": collection,
        "prev": prev,
        "removes": removes,
        "sealed_at": format_time(now),
        "seq": seq,
    }
    return (collection, seq, prev, now, rows), document


def _rfc8785(document: dict[str, Any]) -> bytes | None:
    try:
        return rfc8785.dumps(document)
    except rfc8785.CanonicalizationError:
        return None


@DETERMINISTIC
@given(
    st.one_of(
        documents(plain_text, some_ints),
        documents(plain_text, in_range_ints, tag_text=any_text),
        documents(any_text, some_ints),
    )
)
@example(((" ", 1, None, datetime(2026, 1, 1, tzinfo=UTC), []), {
    "adds": [], "collection": " ", "prev": None, "removes": [], "sealed_at": "2026-01-01T00:00:00Z", "seq": 1
}))
def test_batch_template_is_rfc8785_or_refuses_with_it(case):
    (collection, seq, prev, now, rows), document = case
    expected = _rfc8785(document)
    if expected is None:
        with pytest.raises(FormatError):
            batches._encode_rows(collection, seq, prev, now, rows)
    else:
        assert batches._encode_rows(collection, seq, prev, now, rows) == (
            expected,
            len(document["adds"]),
            len(document["removes"]),
        )


@DETERMINISTIC
@given(documents(plain_text, in_range_ints))
def test_plain_batches_take_the_template_and_it_writes_rfc8785(case):
    """No fallback: plain strings and exact integers are written by the template itself."""
    (collection, seq, prev, now, rows), document = case
    with mock.patch.object(batches, "_encode_slow", side_effect=AssertionError("fell back")):
        payload, adds, removes = batches._encode_rows(collection, seq, prev, now, rows)
    assert payload == rfc8785.dumps(document)
    assert (adds, removes) == (len(document["adds"]), len(document["removes"]))


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), in_range_ints, any_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(any_text, inner, max_size=3)),
    max_leaves=8,
)


@DETERMINISTIC
@given(
    actor=st.dictionaries(any_text, any_text, max_size=3),
    action=any_text,
    subject=any_text,
    details=st.dictionaries(st.one_of(any_text, st.sampled_from(["seq", "subject", "time"])), json_values, max_size=4),
    seq=in_range_ints,
    time=times,
)
def test_audit_entry_parts_joined_are_the_entrys_rfc8785_bytes(actor, action, subject, details, seq, time):
    """What the database function writes (migration 0003): head, the seq's digits, tail, the time, `}`."""
    head, tail = _entry_parts(actor, action, subject, details)
    entry = head + str(seq).encode() + tail + b'"' + format_time(time).encode() + b'"}'
    assert entry == AuditEntry(seq, time, actor, action, subject, details).to_bytes()
    expected = {"action": action, "actor": actor, "details": details, "seq": seq, "subject": subject}
    assert entry == rfc8785.dumps({**expected, "time": format_time(time)})
