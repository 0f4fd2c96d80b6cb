"""Transparency export bundles: what a regulator receives for a period, and how to verify one offline.

A bundle is a zip file (docs/formats.md, "Transparency export bundles"):

    manifest.json        the manifest (RFC 8785 canonical JSON): period, checkpoint, files and their SHA-256
    manifest.dsse.json   a DSSE envelope over manifest.json's bytes, signed by the hub's `export` key
    keys/<v>.json        every key set envelope up to the one current when the bundle was made
    checkpoint.note      the signed audit checkpoint the bundle was drawn at
    entries.jsonl        the audit entries of the period, with one entry either side of it, and the openings
                         (earlier) of the disputes decided in it
    proof.json           one multi-leaf inclusion proof of those entries in the checkpoint's tree
    records.jsonl/.csv   one row per report outcome recorded in the period (statement-of-reasons fields)
    signals.jsonl/.csv   one row per hash added, withdrawn, retired, quarantined or released in the period
    disputes.jsonl/.csv  one row per dispute opened or decided in the period
    aggregates.json/.csv the published aggregates, small cells withheld

`verify_bundle` checks the signature, every digest, the proof against the checkpoint, that the entries are
exactly the period's, that every record, signal event and dispute event rests on its entries and every entry of
the period that makes rows has exactly its rows, and recomputes the aggregates with the suppression rule the
manifest names.
This module is also what the hub writes bundles with, so both sides share one definition of each aggregate.
"""

from __future__ import annotations

import base64
import bisect
import csv
import functools
import hashlib
import io
import json
import re
import zipfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from audit.canonical import canonical_json, format_time, parse_canonical, parse_json, parse_time
from audit.canonical import fields as _fields
from audit.canonical import int_field as _int
from audit.dsse import Envelope, verified_keyids
from audit.errors import (
    FormatError,
    LogError,
    PayloadTypeError,
    ProofError,
    RevokedKeyError,
    RootMismatchError,
    SignatureError,
    VerificationError,
)
from audit.keyset import KeySet, walk_keysets
from audit.merkle import HASH_SIZE, b64decode, b64encode, leaf_hash, node_hash
from audit.note import SIG_ED25519, open_checkpoint
from audit.payloads import AuditEntry
from audit.signing import key_id

EXPORT_TYPE = "application/vnd.hashfed.export.v1+json"
"""The DSSE payload type of a bundle's manifest; signed by keys of the `export` role."""
EXPORT_ROLE = "export"
MANIFEST_VERSION = "hashfed.export.v1"
SUPPRESSION_RULE = "hashfed/small-cells/v1"
DEFAULT_THRESHOLD = 10

OUTCOMES = ("blocked", "removed", "restricted", "no_action", "false_positive", "pending_review")
"""Report outcomes, in the column order of the outcome table."""
DECIDED = frozenset(OUTCOMES) - {"pending_review"}
TAKEN_DOWN = frozenset({"blocked", "removed"})
EVENTS = ("added", "withdrawn", "retired", "quarantined", "released")
"""Signal events, in the column order of the signal table."""
DISPUTE_EVENTS = ("opened", "quarantined", "upheld", "rejected", "released")
"""Dispute events, in the column order of the dispute table."""
DECIDED_DISPUTE = frozenset({"upheld", "rejected", "released"})
"""The dispute events that end a dispute: its time to decision is measured to them."""
_DECISION_EVENTS = {"quarantine": "quarantined", "uphold": "upheld", "confirm": "upheld", "reject": "rejected",
                    "release": "released"}

RECORD_FIELDS = (
    "audit_seq",
    "report_sha256",
    "report",
    "version",
    "outcome",
    "recorded_at",
    "partner",
    "collection",
    "collection_category",
    "signal",
    "signal_type",
    "surface",
    "matched_at",
    "actioned_at",
    "decision_visibility",
    "decision_ground",
    "category",
    "category_specification",
    "content_type",
    "automated_detection",
    "automated_decision",
    "application_date",
    "content_date",
    "source_type",
)
SIGNAL_FIELDS = ("audit_seq", "event", "signal", "collection", "signal_type")
DISPUTE_FIELDS = ("audit_seq", "event", "dispute", "collection", "reason", "source", "opened_seq", "opened_at",
                  "seconds")
AGGREGATE_CSV_FIELDS = ("table", "row", "column", "value")
WITHHELD = "withheld"

_DATA_FILES = (
    "checkpoint.note",
    "entries.jsonl",
    "proof.json",
    "records.jsonl",
    "records.csv",
    "signals.jsonl",
    "signals.csv",
    "disputes.jsonl",
    "disputes.csv",
    "aggregates.json",
    "aggregates.csv",
)
_MANIFEST = "manifest.json"
_ENVELOPE = "manifest.dsse.json"
_CHUNK = 1 << 20


# --- periods ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC whole seconds, with the label it was asked for (`2026-Q3`, `2026-07`, or a range)."""

    label: str
    start: datetime
    end: datetime

    def to_dict(self) -> dict[str, str]:
        return {"label": self.label, "from": format_time(self.start), "to": format_time(self.end)}

    @classmethod
    def from_dict(cls, data: Any) -> Period:
        d = _fields(data, "period", {"label", "from", "to"})
        if not isinstance(d["label"], str) or not d["label"]:
            raise FormatError("period label is a non-empty string")
        period = cls(d["label"], parse_time(d["from"]), parse_time(d["to"]))
        if period.end <= period.start:
            raise FormatError("a period ends after it starts")
        return period


_QUARTER = re.compile(r"(\d{4})-Q([1-4])")
_MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _month_start(year: int, month: int) -> datetime:
    return datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1, tzinfo=UTC)


def _bound(value: str) -> datetime:
    if _DAY.fullmatch(value):
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    return parse_time(value)


def parse_period(label: str | None = None, start: str | None = None, end: str | None = None) -> Period:
    """`2026-Q3`, `2026-07`, or `start` and `end` (dates `2026-07-01` or times `2026-07-01T00:00:00Z`; end
    excluded). Raises `ValueError` with a sentence a person can act on."""
    if label is not None and (start is not None or end is not None):
        raise ValueError("give a period such as 2026-Q3 or 2026-07, or from and to, not both")
    if label is not None:
        if m := _QUARTER.fullmatch(label):
            year, q = int(m.group(1)), int(m.group(2))
            return Period(label, _month_start(year, 3 * q - 2), _month_start(year, 3 * q + 1))
        if m := _MONTH.fullmatch(label):
            year, month = int(m.group(1)), int(m.group(2))
            return Period(label, _month_start(year, month), _month_start(year, month + 1))
        raise ValueError(f"period {label!r} is not a quarter (2026-Q3) or a month (2026-07)")
    if start is None or end is None:
        raise ValueError("give a period such as 2026-Q3 or 2026-07, or both from and to")
    try:
        a, b = _bound(start), _bound(end)
    except (FormatError, ValueError) as e:
        raise ValueError(f"from and to are dates (2026-07-01) or times (2026-07-01T00:00:00Z): {e}") from None
    if b <= a:
        raise ValueError("to must be after from")
    return Period(f"{format_time(a)}/{format_time(b)}", a, b)


# --- records: statement-of-reasons fields ------------------------------------------------------------------

_VISIBILITY = {
    "blocked": "DECISION_VISIBILITY_CONTENT_DISABLED",
    "removed": "DECISION_VISIBILITY_CONTENT_REMOVED",
    "restricted": "DECISION_VISIBILITY_OTHER",
}
_CONTENT_TYPE = {"pdq": "CONTENT_TYPE_IMAGE", "vpdq": "CONTENT_TYPE_VIDEO"}


@functools.lru_cache(maxsize=1024)
def _dsa_head(
    outcome: str, signal_type: str, collection_category: str, automated_detection: bool, automated_decision: bool
) -> tuple[Any, ...]:
    """The statement-of-reasons fields that follow from a record's kind, `decision_visibility` to
    `automated_decision` (shared tuples: never modify the lists inside)."""
    restricts = outcome in _VISIBILITY
    ncii = collection_category == "ncii"
    return (
        _VISIBILITY.get(outcome),
        "DECISION_GROUND_INCOMPATIBLE_CONTENT" if restricts else None,
        "STATEMENT_CATEGORY_CYBER_VIOLENCE" if ncii else "STATEMENT_CATEGORY_OTHER",
        ["KEYWORD_NON_CONSENSUAL_IMAGE_SHARING"] if ncii else [],
        [_CONTENT_TYPE.get(signal_type, "CONTENT_TYPE_OTHER")],
        "Yes" if automated_detection else "No",
        "AUTOMATED_DECISION_FULLY" if automated_decision else "AUTOMATED_DECISION_NOT_AUTOMATED",
    )


def dsa_fields(
    outcome: str,
    signal_type: str,
    collection_category: str,
    automated_detection: bool,
    automated_decision: bool,
    matched_at: datetime,
    actioned_at: datetime | None,
    recorded_at: datetime,
) -> dict[str, Any]:
    """The DSA Transparency Database statement-of-reasons fields a report outcome maps to (docs/formats.md).

    Visibility and ground only for outcomes that restrict content; the rest have null there."""
    head = _dsa_head(outcome, signal_type, collection_category, automated_detection, automated_decision)
    tail = (_day(actioned_at or recorded_at), _day(matched_at), "SOURCE_VOLUNTARY")
    return dict(zip(RECORD_FIELDS[_DSA:], (*head, *tail), strict=True))


def record_values(
    audit_seq: int,
    report_sha256: str,
    report: str,
    version: int,
    outcome: str,
    recorded_at: str,
    partner: str,
    collection: str,
    collection_category: str,
    signal: str,
    signal_type: str,
    surface: str,
    matched_at: str,
    actioned_at: str | None,
    automated_detection: bool,
    automated_decision: bool,
) -> tuple[Any, ...]:
    """One record as a tuple in RECORD_FIELDS order: a report outcome with its statement-of-reasons fields.
    Times are `format_time` strings; `report` and `signal` are keyed digests of this export, never ids or
    hash values."""
    return (
        audit_seq, report_sha256, report, version, outcome, recorded_at, partner, collection, collection_category,
        signal, signal_type, surface, matched_at, actioned_at,
        *_dsa_head(outcome, signal_type, collection_category, automated_detection, automated_decision),
        (actioned_at or recorded_at)[:10], matched_at[:10], "SOURCE_VOLUNTARY",
    )


def record_row(
    *,
    audit_seq: int,
    report_sha256: str,
    report: str,
    version: int,
    outcome: str,
    recorded_at: datetime,
    partner: str,
    collection: str,
    collection_category: str,
    signal: str,
    signal_type: str,
    surface: str,
    matched_at: datetime,
    actioned_at: datetime | None,
    automated_detection: bool,
    automated_decision: bool,
) -> dict[str, Any]:
    """One record as a dict (see `record_values`), from datetimes."""
    return RECORDS.as_dict(record_values(
        audit_seq, report_sha256, report, version, outcome, _iso(recorded_at), partner, collection,
        collection_category, signal, signal_type, surface, _iso(matched_at),
        None if actioned_at is None else _iso(actioned_at), automated_detection, automated_decision,
    ))


def json_line(row: Mapping[str, Any]) -> bytes:
    """One JSON Lines row: compact, keys in RECORD/SIGNAL field order, ASCII only (the reference form: a
    `Codec` writes exactly these bytes, faster)."""
    return json.dumps(row, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    kind = type(value)
    if kind is str:
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is list:
        return " ".join(value)
    return str(value)


def csv_lines(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], *, header: bool = True) -> str:
    """RFC 4180 CSV (CRLF line ends) of `rows` in `columns` order: null is empty, lists are space-separated
    (the reference form: a `Codec` writes exactly this text, faster)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(row[c]) for c in columns])
    return out.getvalue()


_json_str = json.encoder.encode_basestring_ascii  # C: json.dumps's own


_CONTROL = bytes(range(32)) + b"\x7f"  # what JSON escapes or CSV quotes, besides '"', '\\' and ','


def _csv_field(value: str) -> str:
    """One CSV field as `csv.writer` (minimal quoting, CRLF) writes it inside a row of several fields."""
    if '"' in value or "," in value or "\r" in value or "\n" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def _list_field(value: Sequence[str]) -> str:
    return _csv_field(" ".join(value))


def _parse_int(value: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise FormatError(f"{value[:20]!r} is not a whole number")
    return int(value)


class Codec:
    """The JSON Lines and CSV forms of one kind of row, compiled for speed and shared by writer and verifier.

    A row is a tuple in `columns` order; each column is `int`, `str`, `opt` (a string or null), `optint` (a
    whole number or null) or `list` (of strings). `json` gives exactly `json_line` of the row as a dict, `csv`
    exactly its `csv_lines` row; `parse` turns a CSV row (a list of strings) back into the row, so that the
    verifier reads the CSV, renders both forms and compares bytes: each member must be exactly the rendering of
    the same rows.
    """

    def __init__(self, columns: Sequence[str], kinds: Sequence[str]) -> None:
        self.columns = tuple(columns)
        self.kinds = tuple(kinds)
        self.header = ",".join(self.columns) + "\r\n"
        to_json = {
            "int": "str(v[{i}])",
            "str": "_js(v[{i}])",
            "opt": "('null' if v[{i}] is None else _js(v[{i}]))",
            "optint": "('null' if v[{i}] is None else str(v[{i}]))",
            "list": "('[' + ','.join(map(_js, v[{i}])) + ']')",
        }
        to_csv = {
            "int": "str(v[{i}])",
            "str": "_cf(v[{i}])",
            "opt": "('' if v[{i}] is None else _cf(v[{i}]))",
            "optint": "('' if v[{i}] is None else str(v[{i}]))",
            "list": "_lf(v[{i}])",
        }
        from_csv = {
            "int": "(int(f[{i}]) if f[{i}].isdigit() and f[{i}].isascii() else _pi(f[{i}]))",
            "str": "f[{i}]",
            "opt": "(f[{i}] or None)",
            "optint": "(_pi(f[{i}]) if f[{i}] else None)",
            "list": "(f[{i}].split(' ') if f[{i}] else [])",
        }
        j, c, p = [], [], []
        for i, (name, kind) in enumerate(zip(self.columns, self.kinds, strict=True)):
            j.append(repr(("{" if i == 0 else ",") + json.dumps(name) + ":"))
            j.append(to_json[kind].format(i=i))
            c.append(to_csv[kind].format(i=i))
            p.append(from_csv[kind].format(i=i))
        n = len(self.columns)
        source = (
            f"def json(v):\n return ''.join(({', '.join(j)}, '}}\\n'))\n"
            f"def csv(v):\n return ','.join(({', '.join(c)},)) + '\\r\\n'\n"
            f"def parse(f):\n if len(f) != {n}: raise FormatError('a row of ' + str(len(f)) + ' fields, not {n}')\n"
            f" return ({', '.join(p)},)\n"
        )
        # Both forms at once: when no value holds a character that CSV quotes or JSON escapes (the whole CSV line
        # is checked once), every value goes in as it is; otherwise the exact functions above.
        plain_c = {
            "int": "str(v[{i}])",
            "str": "v[{i}]",
            "opt": "('' if v[{i}] is None else v[{i}])",
            "optint": "('' if v[{i}] is None else str(v[{i}]))",
            "list": "' '.join(v[{i}])",
        }
        plain_j = {
            "int": "str(v[{i}])",
            "str": "'\"' + v[{i}] + '\"'",
            "opt": "('null' if v[{i}] is None else '\"' + v[{i}] + '\"')",
            "optint": "('null' if v[{i}] is None else str(v[{i}]))",
            "list": "('[\"' + '\",\"'.join(v[{i}]) + '\"]' if v[{i}] else '[]')",
        }
        pc, pj = [], []
        for i, (name, kind) in enumerate(zip(self.columns, self.kinds, strict=True)):
            pc.append(plain_c[kind].format(i=i))
            pj.append(repr(("{" if i == 0 else ",") + json.dumps(name) + ":"))
            pj.append(plain_j[kind].format(i=i))
        source += (
            "def both(v):\n"
            f" c = ','.join(({', '.join(pc)},))\n"
            f" if (c.count(',') != {n - 1} or not c.isascii() or '\"' in c or '\\\\' in c\n"
            "   or len(c.encode().translate(None, _CTRL)) != len(c)):\n"
            "  return json(v), csv(v)\n"
            f" return ''.join(({', '.join(pj)}, '}}\\n')), c + '\\r\\n'\n"
        )
        scope: dict[str, Any] = {"_js": _json_str, "_cf": _csv_field, "_lf": _list_field, "_pi": _parse_int,
                                 "FormatError": FormatError, "_CTRL": _CONTROL}
        exec(source, scope)  # noqa: S102 - generated from the constant column kinds above, like dataclasses do
        self.json: Any = scope["json"]
        self.csv: Any = scope["csv"]
        self.parse: Any = scope["parse"]
        self.both: Any = scope["both"]  # (json, csv) of a row

    def as_dict(self, row: Sequence[Any]) -> dict[str, Any]:
        return dict(zip(self.columns, row, strict=True))


RECORDS = Codec(
    RECORD_FIELDS,
    ("int", "str", "str", "int", "str", "str", "str", "str", "str", "str", "str", "str", "str", "opt",
     "opt", "opt", "str", "list", "list", "str", "str", "str", "str", "str"),
)
SIGNALS = Codec(SIGNAL_FIELDS, ("int", "str", "str", "str", "str"))
DISPUTES = Codec(DISPUTE_FIELDS, ("int", "str", "str", "str", "str", "str", "int", "str", "optint"))
_DSA = RECORD_FIELDS.index("decision_visibility")
(_R_SEQ, _R_SHA, _R_REPORT, _R_VERSION, _R_OUTCOME, _R_RECORDED, _R_PARTNER, _R_COLLECTION, _R_CATEGORY, _R_SIGNAL,
 _R_TYPE, _R_SURFACE, _R_MATCHED, _R_ACTIONED) = range(_DSA)
_R_DETECTION = RECORD_FIELDS.index("automated_detection")
_R_DECISION = RECORD_FIELDS.index("automated_decision")
_R_APPLICATION, _R_CONTENT, _R_SOURCE = _R_DECISION + 1, _R_DECISION + 2, _R_DECISION + 3


# --- aggregates -------------------------------------------------------------------------------------------


_TIME_FORM = re.compile(r"\d{4}-\d\d-\d\dT(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\dZ", re.ASCII)


@functools.lru_cache(maxsize=8192)
def _minute_epoch(minute: str) -> int:
    """POSIX seconds of `YYYY-MM-DDTHH:MM`, checked."""
    if not _TIME_FORM.fullmatch(minute + ":00Z"):
        raise FormatError(f"time {minute!r}… is not YYYY-MM-DDTHH:MM:SSZ")
    try:
        day = datetime.strptime(minute[:10], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise FormatError(f"time {minute!r}: not a valid date") from None
    return int(day.timestamp()) + int(minute[11:13]) * 3600 + int(minute[14:16]) * 60


def _epoch(value: Any) -> int:
    """POSIX seconds of a time in `format_time`'s form (a FormatError for anything else). Records come in time
    order, so their minutes repeat: each minute is checked and computed once (cached), then only the seconds."""
    if type(value) is not str or len(value) != 20 or value[16] != ":" or value[19] != "Z":
        raise FormatError(f"time {str(value)[:40]!r} is not YYYY-MM-DDTHH:MM:SSZ")
    seconds = value[17:19]
    if not ("0" <= seconds[0] <= "5" and "0" <= seconds[1] <= "9"):
        raise FormatError(f"time {value!r} is not YYYY-MM-DDTHH:MM:SSZ")
    return _minute_epoch(value[:16]) + int(seconds)


@functools.lru_cache(maxsize=4096)
def _iso(t: datetime) -> str:
    return format_time(t)


@functools.lru_cache(maxsize=4096)
def _day(t: datetime) -> str:
    return t.date().isoformat()


def _percentile(sorted_values: Sequence[int], p: int) -> int:
    """Nearest-rank percentile (p in percent): the ceil(p/100 * n)-th smallest value."""
    n = len(sorted_values)
    rank = max(1, -(-p * n // 100))
    return sorted_values[rank - 1]


def _percent(numerator: int, denominator: int) -> str:
    """numerator/denominator as a percentage with one decimal, rounded half up, by integer arithmetic."""
    tenths = (numerator * 1000 * 2 + denominator) // (2 * denominator)
    return f"{tenths // 10}.{tenths % 10}"


class Aggregator:
    """Counts a period's entries, records, signal events and dispute events; the hub and the verifier feed it
    the same rows.

    Memory: a few counters per (collection, type), sets of partner ids, and one integer per actioned record
    and per decided dispute.
    """

    def __init__(self) -> None:
        self.signals: dict[tuple[str, str], dict[str, int]] = {}
        self.outcomes: dict[str, dict[str, int]] = {}
        self.received = 0
        self.detected = 0
        self.decided = 0
        self.automated = 0
        self.taken_down = 0
        self.durations = array("q")
        self.reporting: set[str] = set()
        self.receiving: set[str] = set()
        self.acknowledging: set[str] = set()
        self.suspensions = 0
        self.disputes: dict[str, dict[str, int]] = {}
        self.decision_times = array("q")

    def entry(self, e: AuditEntry) -> None:
        partner = e.actor.get("partner")
        if e.action == "token.issue" and isinstance(partner, str) and "feed:read" in e.details.get("scopes", ()):
            self.receiving.add(partner)
        elif e.action == "feed.ack" and isinstance(e.details.get("partner"), str):
            self.acknowledging.add(e.details["partner"])
        elif e.action == "partner.suspend":
            self.suspensions += 1

    def record(self, r: Sequence[Any], seconds: int | None = None) -> None:
        """One record, a tuple in RECORD_FIELDS order (`record_values`); `seconds`: its actioned_at minus
        matched_at when the caller has them already."""
        outcome = r[_R_OUTCOME]
        collection = r[_R_COLLECTION]
        counts = self.outcomes.get(collection)
        if counts is None:
            counts = self.outcomes[collection] = dict.fromkeys(OUTCOMES, 0)
        counts[outcome] += 1
        self.reporting.add(r[_R_PARTNER])
        if r[_R_VERSION] == 1:
            self.received += 1
            self.detected += r[_R_DETECTION] == "Yes"
        if outcome in DECIDED:
            self.decided += 1
            self.automated += r[_R_DECISION] == "AUTOMATED_DECISION_FULLY"
            self.taken_down += outcome in TAKEN_DOWN
        if r[_R_ACTIONED] is not None and outcome in _VISIBILITY:
            self.durations.append(
                _epoch(r[_R_ACTIONED]) - _epoch(r[_R_MATCHED]) if seconds is None else seconds
            )

    def signal(self, s: Sequence[Any]) -> None:
        """One signal event, a tuple in SIGNAL_FIELDS order."""
        self.signals.setdefault((s[3], s[4]), dict.fromkeys(EVENTS, 0))[s[1]] += 1

    def dispute(self, d: Sequence[Any]) -> None:
        """One dispute event, a tuple in DISPUTE_FIELDS order."""
        self.disputes.setdefault(d[3], dict.fromkeys(DISPUTE_EVENTS, 0))[d[1]] += 1
        if d[1] in DECIDED_DISPUTE:
            self.decision_times.append(d[8])

    def raw(self) -> dict[str, Any]:
        """Every aggregate before suppression."""
        durations = sorted(self.durations)
        decision_times = sorted(self.decision_times)
        return {
            "signals": {f"{c}/{t}": dict(v) for (c, t), v in sorted(self.signals.items())},
            "outcomes": {c: dict(v) for c, v in sorted(self.outcomes.items())},
            "reports_received": self.received,
            "automated_detection": [self.detected, self.received],
            "automated_decision": [self.automated, self.decided],
            "blocked_or_removed": [self.taken_down, self.decided],
            "actioned": len(durations),
            "median_seconds_to_action": _percentile(durations, 50) if durations else None,
            "p90_seconds_to_action": _percentile(durations, 90) if durations else None,
            "partners_receiving": len(self.receiving),
            "partners_acknowledging": len(self.acknowledging),
            "partners_reporting": len(self.reporting),
            "partner_suspensions": self.suspensions,
            "disputes": {c: dict(v) for c, v in sorted(self.disputes.items())},
            "disputes_decided": len(decision_times),
            "median_seconds_to_decision": _percentile(decision_times, 50) if decision_times else None,
        }

    def published(self, threshold: int) -> dict[str, Any]:
        """The aggregates as published under `SUPPRESSION_RULE` with `threshold` (null = withheld)."""
        return publish(self.raw(), threshold)


def _small(value: int, threshold: int) -> bool:
    return 0 < value < threshold


def suppress_table(cells: Sequence[Sequence[int]], threshold: int, width: int) -> list[list[int | None]]:
    """A table with its margins, small cells withheld, then complements until no line has one withheld cell.

    The grid holds the cells, each row's total (last column) and each column's total (last row, with the
    grand total). Primary: every count from 1 to threshold-1. Secondary: while some row or column of the grid
    (totals included) has exactly one withheld value, withhold the smallest other non-zero value of that line
    (else its smallest other value): a withheld value can then never be found by subtraction from its line.
    """
    rows = [list(r) for r in cells]
    ncols = width  # the columns, also when there is no row (an empty period still has its totals line)
    grid = [[*r, sum(r)] for r in rows]
    grid.append([sum(r[j] for r in rows) for j in range(ncols)] + [sum(sum(r) for r in rows)])
    hidden = [[_small(v, threshold) for v in line] for line in grid]

    def lines() -> Iterator[list[tuple[int, int]]]:
        for i in range(len(grid)):
            yield [(i, j) for j in range(ncols + 1)]
        for j in range(ncols + 1):
            yield [(i, j) for i in range(len(grid))]

    changed = True
    while changed:
        changed = False
        for line in lines():
            withheld = [p for p in line if hidden[p[0]][p[1]]]
            if len(withheld) != 1:
                continue
            others = [p for p in line if not hidden[p[0]][p[1]]]
            if not others:
                continue
            pick = min(others, key=lambda p: (grid[p[0]][p[1]] == 0, grid[p[0]][p[1]], p))
            hidden[pick[0]][pick[1]] = True
            changed = True
    return [[None if hidden[i][j] else grid[i][j] for j in range(ncols + 1)] for i in range(len(grid))]


def _share(pair: Sequence[int], threshold: int, hidden: bool = False) -> str | None:
    numerator, denominator = pair
    if hidden or denominator == 0 or _small(numerator, threshold) or _small(denominator - numerator, threshold):
        return None
    if denominator < threshold:
        return None
    return _percent(numerator, denominator)


def _count(value: int, threshold: int) -> int | None:
    return None if _small(value, threshold) else value


def publish(raw: Mapping[str, Any], threshold: int) -> dict[str, Any]:
    """Apply the small-cell rule to `Aggregator.raw()` output (see docs/formats.md for each aggregate)."""
    sig_rows = list(raw["signals"])
    sig = suppress_table([[raw["signals"][k][e] for e in EVENTS] for k in sig_rows], threshold, len(EVENTS))
    out_rows = list(raw["outcomes"])
    outc = suppress_table([[raw["outcomes"][k][o] for o in OUTCOMES] for k in out_rows], threshold, len(OUTCOMES))
    totals = outc[-1]
    # The share of decisions that blocked or removed is withheld with any of the counts it is made from.
    taken_hidden = any(totals[OUTCOMES.index(o)] is None for o in TAKEN_DOWN)
    dis_rows = list(raw["disputes"])
    dis = suppress_table(
        [[raw["disputes"][k][e] for e in DISPUTE_EVENTS] for k in dis_rows], threshold, len(DISPUTE_EVENTS)
    )
    decided = raw["disputes_decided"]
    actioned = raw["actioned"]
    timed = actioned >= threshold
    return {
        "signals": {
            "columns": [*EVENTS, "total"],
            "rows": {k: sig[i] for i, k in enumerate(sig_rows)},
            "total": sig[-1],
        },
        "outcomes": {
            "columns": [*OUTCOMES, "total"],
            "rows": {k: outc[i] for i, k in enumerate(out_rows)},
            "total": totals,
        },
        "reports_received": _count(raw["reports_received"], threshold),
        "automated_detection_percent": _share(raw["automated_detection"], threshold),
        "automated_decision_percent": _share(raw["automated_decision"], threshold),
        "blocked_or_removed_percent": _share(raw["blocked_or_removed"], threshold, taken_hidden),
        "actioned": _count(actioned, threshold),
        "median_seconds_to_action": raw["median_seconds_to_action"] if timed else None,
        "p90_seconds_to_action": raw["p90_seconds_to_action"] if timed else None,
        "partners_receiving": _count(raw["partners_receiving"], threshold),
        "partners_acknowledging": _count(raw["partners_acknowledging"], threshold),
        "partners_reporting": _count(raw["partners_reporting"], threshold),
        "partner_suspensions": _count(raw["partner_suspensions"], threshold),
        "disputes": {
            "columns": [*DISPUTE_EVENTS, "total"],
            "rows": {k: dis[i] for i, k in enumerate(dis_rows)},
            "total": dis[-1],
        },
        "disputes_decided": _count(decided, threshold),
        "median_seconds_to_decision": raw["median_seconds_to_decision"] if decided >= threshold else None,
    }


_TABLES = ("signals", "outcomes", "disputes")


def aggregates_document(period: Period, threshold: int, published: Mapping[str, Any]) -> dict[str, Any]:
    """aggregates.json: the period, the rule and the published aggregates."""
    return {
        "period": period.to_dict(),
        "suppression": {"rule": SUPPRESSION_RULE, "threshold": threshold},
        "aggregates": dict(published),
    }


def aggregates_csv(published: Mapping[str, Any]) -> str:
    """aggregates.csv: one line per published value (`table,row,column,value`; withheld says so)."""
    lines: list[dict[str, Any]] = []

    def value(v: Any) -> Any:
        return WITHHELD if v is None else v

    for table in _TABLES:
        t = published[table]
        for name, cells in [*t["rows"].items(), ("total", t["total"])]:
            for column, v in zip(t["columns"], cells, strict=True):
                lines.append({"table": table, "row": name, "column": column, "value": value(v)})
    for key, v in published.items():
        if key not in _TABLES:
            lines.append({"table": "summary", "row": "", "column": key, "value": value(v)})
    return csv_lines(AGGREGATE_CSV_FIELDS, lines)


# --- multi-leaf inclusion proof ----------------------------------------------------------------------------


def _split(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


class _Carried:
    """The carried leaves: a few single ones (`earlier`, sorted) and the run [lo, hi)."""

    def __init__(self, lo: int, hi: int, earlier: Sequence[int]) -> None:
        self.lo, self.hi, self.earlier = lo, hi, list(earlier)

    def within(self, a: int, b: int) -> bool:
        """Whether [a, b) holds a carried leaf."""
        if a < self.hi and b > self.lo:
            return True
        i = bisect.bisect_left(self.earlier, a)
        return i < len(self.earlier) and self.earlier[i] < b

    def covers(self, a: int, b: int) -> bool:
        """Whether every leaf of [a, b) is carried."""
        return self.lo <= a and b <= self.hi


def multiproof_ranges(lo: int, hi: int, size: int, earlier: Sequence[int] = ()) -> list[tuple[int, int]]:
    """The subtrees [a, b) of the RFC 9162 tree of `size` leaves that hold none of the carried leaves (the run
    [lo, hi) and the single leaves `earlier`, all below lo) and whose parent holds some: the proof carries their
    hashes, left to right."""
    if not 0 <= lo < hi <= size or any(not 0 <= x < lo for x in earlier):
        raise ProofError(f"leaves [{lo}, {hi}) and {len(earlier)} earlier ones are not leaves of a tree of size {size}")
    carried = _Carried(lo, hi, earlier)
    out: list[tuple[int, int]] = []

    def walk(a: int, b: int) -> None:
        if not carried.within(a, b):
            out.append((a, b))
        elif b - a > 1 and not carried.covers(a, b):
            mid = a + _split(b - a)
            walk(a, mid)
            walk(mid, b)

    walk(0, size)
    return out


def multiproof_root(
    lo: int, leaves: Sequence[bytes], size: int, hashes: Sequence[bytes], earlier: Sequence[int] = ()
) -> bytes:
    """The root of the tree of `size` leaves from the carried leaves (`leaves`: those of `earlier`, then those of
    [lo, lo + len(leaves) - len(earlier))) and the proof's hashes."""
    hi = lo + len(leaves) - len(earlier)
    ranges = multiproof_ranges(lo, hi, size, earlier)
    if len(hashes) != len(ranges):
        raise ProofError(f"the proof has {len(hashes)} hashes, leaves [{lo}, {hi}) of size {size} need {len(ranges)}")
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise ProofError("proof hashes are 32 bytes")
    carried = _Carried(lo, hi, earlier)
    index = {x: i for i, x in enumerate(earlier)}
    given = iter(hashes)
    run = len(earlier) - lo

    def walk(a: int, b: int) -> bytes:
        if not carried.within(a, b):
            return next(given)
        if b - a == 1:
            return leaves[a + run] if a >= lo else leaves[index[a]]
        mid = a + _split(b - a)
        return node_hash(walk(a, mid), walk(mid, b))

    return walk(0, size)


# --- writing ----------------------------------------------------------------------------------------------


def _joined(chunks: list[Any]) -> bytes:
    """Chunks of one kind joined: text (UTF-8; JSON lines are ASCII) or bytes."""
    if all(type(c) is str for c in chunks):
        return "".join(chunks).encode()
    return b"".join(c if type(c) is bytes else c.encode() for c in chunks)


class _HashingWriter:
    """A member being written: counts and hashes what passes through."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.size += len(data)
        self.target.write(data)


class _Stream:
    """Only `write`: zipfile then writes every member the same way (sizes after the data), whether the
    target could seek or not, so a bundle written to a file and one only hashed have the same bytes."""

    def __init__(self, target: IO[bytes]) -> None:
        self._target = target

    def write(self, data: bytes) -> int:
        self._target.write(data)
        return len(data)

    def flush(self) -> None:
        self._target.flush()


class BundleWriter:
    """Writes a bundle zip member by member (streamed: nothing is held whole), then the signed manifest.

    Times inside the zip are the bundle's own `created_at`, so the same content gives the same bytes.
    """

    def __init__(
        self, fileobj: IO[bytes], created_at: datetime, compressor: Callable[[], Any] | None = None
    ) -> None:
        self._zip = zipfile.ZipFile(  # type: ignore[call-overload]
            _Stream(fileobj), "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1
        )
        # A raw-deflate compressor object factory (`compress`, `flush`) in place of zlib's level 1: the hub
        # passes ISA-L's, several times faster. Any deflate reads back the same; the bytes differ, so one writer
        # must always use the same one.
        self._compressor = compressor
        t = created_at.astimezone(UTC)
        self._stamp = (max(t.year, 1980), t.month, t.day, t.hour, t.minute, t.second)
        self.files: dict[str, dict[str, Any]] = {}

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, self._stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        return info

    def write(self, name: str, chunks: Iterable[bytes | str]) -> None:
        """Write one member from chunks (bytes, or ASCII text) and note its SHA-256 and size for the manifest.

        Chunks are gathered to about 1 MiB; each is then compressed, hashed and written by one worker thread
        (zlib, hashlib and file writes release the GIL) while the caller makes the next: in order, and with at
        most two chunks held."""
        with self._zip.open(self._info(name), "w", force_zip64=True) as f:
            if self._compressor is not None:
                f._compressor = self._compressor()  # zipfile's, before any data
            w = _HashingWriter(f)
            pending: Future[None] | None = None
            buffer: list[Any] = []
            held = 0
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle") as pool:
                for chunk in chunks:
                    buffer.append(chunk)
                    held += len(chunk)
                    if held >= _CHUNK:
                        data = _joined(buffer)
                        buffer, held = [], 0
                        if pending is not None:
                            pending.result()
                        pending = pool.submit(w.write, data)
                if pending is not None:
                    pending.result()
            if buffer:
                w.write(_joined(buffer))
        self.files[name] = {"sha256": w.digest.hexdigest(), "bytes": w.size}

    def finish(self, manifest: bytes, envelope: bytes) -> None:
        """Write manifest.json and its envelope last, and close the zip."""
        for name, data in ((_MANIFEST, manifest), (_ENVELOPE, envelope)):
            with self._zip.open(self._info(name), "w") as f:
                f.write(data)
        self._zip.close()


def manifest_document(
    *,
    hub: str,
    export_id: str,
    period: Period,
    created_at: datetime,
    checkpoint_size: int,
    checkpoint_root: bytes,
    first: int,
    end: int,
    keysets: int,
    threshold: int,
    counts: Mapping[str, int],
    files: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The manifest: what the bundle is, what it was drawn at, and the digest of every other file."""
    return {
        "type": MANIFEST_VERSION,
        "hub": hub,
        "export": export_id,
        "period": period.to_dict(),
        "created_at": format_time(created_at),
        "checkpoint": {"origin": f"{hub}/audit", "size": checkpoint_size, "root": b64encode(checkpoint_root)},
        "entries": {"first": first, "end": end},
        "keysets": keysets,
        "suppression": {"rule": SUPPRESSION_RULE, "threshold": threshold},
        "counts": dict(counts),
        "files": {k: dict(v) for k, v in sorted(files.items())},
    }


def parse_entry(data: bytes) -> AuditEntry:
    """An audit entry from its bytes, strictly typed (no floats, no duplicate keys). The bytes are what the
    proof covers, so their canonical form is not re-checked: that costs more than the rest of a bundle."""
    d = _fields(parse_json(data), "audit entry", {"seq", "time", "actor", "action", "subject", "details"})
    if not isinstance(d["actor"], dict) or not isinstance(d["details"], dict):
        raise FormatError("audit entry actor and details are objects")
    if not isinstance(d["action"], str) or not isinstance(d["subject"], str):
        raise FormatError("audit entry action and subject are strings")
    return AuditEntry(_int(d["seq"], "seq"), parse_time(d["time"]), d["actor"], d["action"], d["subject"], d["details"])


def entry_line(seq: int, entry: bytes) -> bytes:
    """entries.jsonl: `{"entry": base64 of the canonical entry bytes, "seq": n}` per line (RFC 8785: the
    keys in order, base64 needs no escape)."""
    return b'{"entry":"%s","seq":%d}\n' % (base64.b64encode(entry), seq)


def proof_document(size: int, lo: int, hi: int, hashes: Sequence[bytes], earlier: Sequence[int] = ()) -> bytes:
    """proof.json: the multi-leaf proof of entries [lo, hi) and `earlier` in the tree of `size` leaves."""
    return canonical_json(
        {"size": size, "from": lo, "to": hi, "earlier": list(earlier), "hashes": [b64encode(h) for h in hashes]}
    )


def carried_range(first: int, end: int) -> tuple[int, int]:
    """The entries a bundle carries: the period's [first, end) and one either side (the one before the
    period if there is one, and the first entry at or after its end, which the checkpoint must hold)."""
    return max(first - 1, 0), end + 1


# --- verifying --------------------------------------------------------------------------------------------


@dataclass
class ExportReport:
    """The outcome of `verify_bundle`: `ok`, a one-line `verdict`, and what was recomputed."""

    ok: bool
    verdict: str
    records: int = 0
    signal_events: int = 0
    entries: int = 0
    aggregates: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dispute_events: int = 0


class _Member(io.RawIOBase):
    """A zip member read through: hashes what passes, and on reaching its end notes its SHA-256 and size."""

    def __init__(self, bundle: _Bundle, name: str) -> None:
        super().__init__()
        self._bundle, self._name = bundle, name
        self._f = bundle.zf.open(name)
        self._digest = hashlib.sha256()
        self._size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._f.read(len(buffer))
        n = len(data)
        if n:
            buffer[:n] = data
            self._digest.update(data)
            self._size += n
        else:
            self._bundle.digested[self._name] = (self._digest.hexdigest(), self._size)
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


class _Bundle:
    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self.names = set(zf.namelist())
        if len(self.names) != len(zf.namelist()):
            raise FormatError("the bundle holds a file name twice")
        # The SHA-256 and size of each member read to its end: its digest check needs no second read.
        self.digested: dict[str, tuple[str, int]] = {}

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        if name not in self.names:
            raise FormatError(f"the bundle has no {name}")
        if self.zf.getinfo(name).file_size > limit:
            raise FormatError(f"{name} is larger than {limit} bytes")
        data = self.zf.read(name)
        self.digested[name] = (hashlib.sha256(data).hexdigest(), len(data))
        return data

    def lines(self, name: str) -> Iterator[bytes]:
        # A BufferedReader's readline is C; a zip member's own is Python.
        with io.BufferedReader(_Member(self, name), _CHUNK) as f:
            yield from f

    def text_lines(self, name: str) -> Iterator[str]:
        with (
            io.BufferedReader(_Member(self, name), _CHUNK) as f,
            io.TextIOWrapper(f, encoding="utf-8", newline="") as t,
        ):
            yield from t


def _open_manifest(bundle: _Bundle, pinned: str | None) -> tuple[dict[str, Any], KeySet]:
    envelope = Envelope.from_json(bundle.read(_ENVELOPE))
    if envelope.payload_type != EXPORT_TYPE:
        raise PayloadTypeError(f"manifest envelope payload type {envelope.payload_type!r}, expected {EXPORT_TYPE!r}")
    versions = sorted(
        int(k.group(1)) for n in bundle.names if (k := re.fullmatch(r"keys/(0|[1-9][0-9]*)\.json", n))
    )
    if versions != list(range(1, len(versions) + 1)) or not versions:
        raise FormatError("keys/ must hold 1.json, 2.json, ... without gaps")
    try:
        trusted = walk_keysets([bundle.read(f"keys/{v}.json") for v in versions], pinned, None)
    except VerificationError as e:
        raise type(e)(f"key set: {e}") from e
    keyset = trusted.keyset
    # The signature over the exact bytes first (any export key the key sets list), then parse.
    signed = verified_keyids(envelope, keyset.role_keys(EXPORT_ROLE))
    if not signed:
        raise SignatureError("the manifest is not signed by an export key of the pinned key sets")
    manifest = parse_canonical(envelope.payload)
    if bundle.read(_MANIFEST) != envelope.payload:
        raise FormatError("manifest.json is not the payload its envelope signs")
    m = _fields(
        manifest,
        "manifest",
        {"type", "hub", "export", "period", "created_at", "checkpoint", "entries", "keysets", "suppression",
         "counts", "files"},
    )
    if m["type"] != MANIFEST_VERSION:
        raise FormatError(f"manifest type {m['type']!r} is not {MANIFEST_VERSION!r}")
    created_at = parse_time(m["created_at"])
    try:
        keyset.check_threshold(signed, EXPORT_ROLE, created_at)
        trusted.check_expiry(created_at)
    except VerificationError as e:
        raise type(e)(f"manifest signature: {e}") from e
    if keyset.hub != m["hub"]:
        raise FormatError(f"key set hub {keyset.hub!r} is not the manifest's {m['hub']!r}")
    if m["keysets"] != len(versions):
        raise FormatError(f"the manifest names {m['keysets']} key sets, the bundle holds {len(versions)}")
    return m, keyset


def _check_names(bundle: _Bundle, files: Any) -> None:
    if not isinstance(files, dict):
        raise FormatError("manifest files is an object")
    expected = set(_DATA_FILES) | {n for n in bundle.names if n.startswith("keys/")}
    if set(files) != expected:
        raise FormatError(f"manifest files {sorted(files)} are not the bundle's files {sorted(expected)}")
    if bundle.names != expected | {_MANIFEST, _ENVELOPE}:
        extra = sorted(bundle.names - expected - {_MANIFEST, _ENVELOPE})
        raise FormatError(f"the bundle holds files its manifest does not list: {extra}")


def _check_files(bundle: _Bundle, files: dict[str, Any], known: Mapping[str, tuple[str, int]]) -> None:
    """Every member's SHA-256 and size against the manifest: from `known` (members read to their end), else read."""
    for name in sorted(files):
        spec = _fields(files[name], f"manifest file {name}", {"sha256", "bytes"})
        if name in known:
            sha, size = known[name]
        else:
            digest, size = hashlib.sha256(), 0
            with bundle.zf.open(name) as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
            sha = digest.hexdigest()
        if sha != spec["sha256"] or size != spec["bytes"]:
            raise FormatError(f"{name}: SHA-256 or size differs from the signed manifest (edited after signing)")


def _check_checkpoint(bundle: _Bundle, m: Mapping[str, Any], keyset: KeySet) -> tuple[int, bytes]:
    cp = _fields(m["checkpoint"], "manifest checkpoint", {"origin", "size", "root"})
    origin = f"{m['hub']}/audit"
    if cp["origin"] != origin:
        raise FormatError(f"manifest checkpoint origin {cp['origin']!r} is not {origin!r}")
    try:
        signed = open_checkpoint(bundle.read("checkpoint.note"), origin, list(keyset.role_keys("audit").values()))
    except VerificationError as e:
        raise type(e)(f"checkpoint.note: {e} (not signed by an audit key of the key sets)") from e
    infos = [keyset.keys[key_id(s.public_key)] for s in signed.note.signatures if s.sig_type == SIG_ED25519]
    if infos and all(i.revoked_at is not None for i in infos):
        raise RevokedKeyError("checkpoint.note is signed only by revoked audit keys")
    c = signed.checkpoint
    if c.size != cp["size"] or b64encode(c.root) != cp["root"]:
        raise FormatError("checkpoint.note is not the checkpoint the manifest names")
    return c.size, c.root


class _Peek:
    """An iterator of rows that can look one ahead."""

    def __init__(self, rows: Iterator[tuple[Any, ...]]) -> None:
        self._rows = rows
        self._next: tuple[Any, ...] | None = next(rows, None)

    def peek(self) -> tuple[Any, ...] | None:
        return self._next

    def take(self) -> tuple[Any, ...]:
        row = self._next
        if row is None:
            raise LogError("no more rows")
        self._next = next(self._rows, None)
        return row


def _rows(bundle: _Bundle, name: str, codec: Codec) -> Iterator[tuple[Any, ...]]:
    """The rows of a .jsonl member and its .csv twin, in audit_seq order: each CSV row, read back, must render
    to exactly its own text and to exactly the JSON line beside it (one definition of each row's bytes)."""
    csv_name = name.replace(".jsonl", ".csv")
    consumed: list[str] = []

    def text() -> Iterator[str]:
        for line in bundle.text_lines(csv_name):
            consumed.append(line)
            yield line

    reader = csv.reader(text(), strict=True)
    if next(reader, None) != list(codec.columns) or "".join(consumed) != codec.header:
        raise FormatError(f"{csv_name}: the header is not {','.join(codec.columns)}")
    consumed.clear()
    lines = bundle.lines(name)
    both = codec.both
    previous = -1
    n = 0
    for fields in reader:
        n += 1
        raw = "".join(consumed)
        consumed.clear()
        try:
            row = codec.parse(fields)
        except FormatError as e:
            raise FormatError(f"{csv_name} row {n}: {e}") from None
        as_json, as_csv = both(row)
        if as_csv != raw:
            raise FormatError(f"{csv_name} row {n} is not written in the bundle's CSV form")
        line = next(lines, None)
        if line is None:
            raise FormatError(f"{csv_name} has more rows than {name}")
        if line != as_json.encode():
            raise FormatError(f"{csv_name} row {n} is not {name} line {n}")
        if row[0] < previous:
            raise FormatError(f"{name} line {n}: rows are not in audit_seq order")
        previous = row[0]
        yield row
    if next(lines, None) is not None:
        raise FormatError(f"{name} has more lines than {csv_name}")


def _check_record(r: Sequence[Any], e: AuditEntry, time: str, where: str) -> int | None:
    """Check a record against its entry; returns actioned_at minus matched_at (None without actioned_at)."""
    outcome = r[_R_OUTCOME]
    if outcome not in OUTCOMES:
        raise FormatError(f"{where}: unknown outcome {outcome!r}")
    if r[_R_RECORDED] != time:
        raise LogError(f"{where}: recorded_at {r[_R_RECORDED]} is not its entry's time {time}")
    if e.action == "reports.submit":
        if r[_R_VERSION] != 1 or e.subject != "partner/" + r[_R_PARTNER]:
            raise LogError(f"{where}: a first version of a report of partner {r[_R_PARTNER]} is not what entry "
                           f"{e.seq} records")
    elif (
        e.subject.split("/")[:2] != ["report", r[_R_PARTNER]]
        or e.details.get("version") != r[_R_VERSION]
        or e.details.get("outcome") != outcome
    ):
        raise LogError(f"{where}: version {r[_R_VERSION]} ({outcome}) is not what entry {e.seq} records")
    actioned = r[_R_ACTIONED]
    matched = _epoch(r[_R_MATCHED])
    seconds = None if actioned is None else _epoch(actioned) - matched
    head = _dsa_head(outcome, r[_R_TYPE], r[_R_CATEGORY], r[_R_DETECTION] == "Yes",
                     r[_R_DECISION] == "AUTOMATED_DECISION_FULLY")
    if (
        r[_DSA:_R_APPLICATION] != head
        or r[_R_APPLICATION] != (actioned or time)[:10]
        or r[_R_CONTENT] != r[_R_MATCHED][:10]
        or r[_R_SOURCE] != "SOURCE_VOLUNTARY"
    ):
        raise FormatError(f"{where}: its statement-of-reasons fields do not follow from its outcome")
    return seconds


def _entry_reports(e: AuditEntry) -> list[str]:
    if e.action == "reports.submit":
        reports = e.details.get("reports")
        if not isinstance(reports, list):
            raise LogError(f"entry {e.seq}: reports.submit without its reports")
        return sorted(str(item.get("sha256")) for item in reports if isinstance(item, dict))
    if e.action == "report.outcome":
        return [str(e.details.get("sha256"))]
    return []


@dataclass(frozen=True)
class EntryEvents:
    """The signal events an audit entry must have: `count` events `event`, of the signals `ids` when the entry
    names them, in one of `collections` and of type `signal_type` when the entry says; `of_dispute`: in the
    collection of the dispute the entry decides."""

    event: str
    count: int
    ids: tuple[str, ...] | None = None
    collections: frozenset[Any] | None = None
    signal_type: str | None = None
    of_dispute: bool = False


def _ids(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise LogError(f"{where}: a list of signal ids")
    return tuple(value)


def signal_events(e: AuditEntry) -> EntryEvents | None:
    """What signal events an entry of the period makes (docs/formats.md, "Signal events"), or None."""
    d = e.details
    where = f"entry {e.seq} ({e.action})"
    if e.action == "signals.submit":
        return EntryEvents("added", _int(d.get("count"), f"{where} count"), None, frozenset({d.get("collection")}))
    if e.action == "signal.retract":
        return EntryEvents("withdrawn", 1, (e.subject.split("/", 1)[-1],), frozenset({d.get("collection")}))
    if e.action == "signal.retire":
        if "removed" in d:  # a hash retired everywhere: every active signal of it
            ids = _ids(d["removed"], where)
            collections = d.get("collections")
            return EntryEvents("retired", len(ids), ids, frozenset(collections if isinstance(collections, list)
                                                                    else ()), d.get("type"))
        return EntryEvents("retired", 1, (e.subject.split("/", 1)[-1],), frozenset({d.get("collection")}))
    if e.action == "case.withdraw":
        named = _ids(d["removed"], where) if "removed" in d else None
        return EntryEvents("withdrawn", _int(d.get("count"), f"{where} count"), named)
    if e.action == "dispute.decide" and "state" not in d:
        event = _DECISION_EVENTS.get(d.get("action"))  # type: ignore[arg-type]
        if event == "quarantined":
            return EntryEvents("quarantined", 1, (str(d.get("signal")),), of_dispute=True)
        if event == "upheld":  # the hash retired everywhere, and the disputed signal
            ids = tuple(sorted({*_ids(d.get("removed"), where), str(d.get("signal"))}))
            return EntryEvents("retired", len(ids), ids, None, d.get("type"))
        if event in ("rejected", "released") and "republished" in d:  # out of quarantine under a new id
            return EntryEvents("released", 1, (str(d["republished"]),), of_dispute=True)
    return None


def dispute_event(e: AuditEntry) -> str | None:
    """The dispute event an entry is (`opened`, or a decision that takes effect), or None."""
    if e.action == "dispute.open":
        return "opened"
    if e.action == "dispute.decide" and "state" not in e.details:
        return _DECISION_EVENTS.get(e.details.get("action"))  # type: ignore[arg-type]
    return None


@dataclass(frozen=True)
class Opened:
    """A dispute as its `dispute.open` entry states it."""

    seq: int
    time: str
    collection: str
    reason: str
    source: str

    @classmethod
    def of(cls, e: AuditEntry) -> Opened:
        d = e.details
        collection, reason = d.get("collection"), d.get("reason")
        if not isinstance(collection, str) or not isinstance(reason, str):
            raise LogError(f"entry {e.seq}: dispute.open without its collection and reason")
        return cls(e.seq, _iso(e.time), collection, reason, "flag" if "flag" in d else "partner")


def dispute_row(seq: int, event: str, time: str, digest: str, opened: Opened) -> tuple[Any, ...]:
    """One dispute event as a tuple in DISPUTE_FIELDS order (`digest`: the dispute's keyed digest)."""
    seconds = _epoch(time) - _epoch(opened.time) if event in DECIDED_DISPUTE else None
    return (seq, event, digest, opened.collection, opened.reason, opened.source, opened.seq, opened.time, seconds)


def _verify(path: str, pinned: str | None) -> ExportReport:
    with zipfile.ZipFile(path) as zf:
        bundle = _Bundle(zf)
        m, keyset = _open_manifest(bundle, pinned)
        _check_names(bundle, m["files"])
        # The members are read once: their digests are taken as they are read, and checked at the end. When
        # reading fails, every digest is checked first: one that differs is the failure reported.
        try:
            report = _verify_content(bundle, m, keyset)
        except BaseException:
            _check_files(bundle, m["files"], {})
            raise
        _check_files(bundle, m["files"], bundle.digested)
    return report


def _verify_content(bundle: _Bundle, m: dict[str, Any], keyset: KeySet) -> ExportReport:
    period = Period.from_dict(m["period"])
    size, root = _check_checkpoint(bundle, m, keyset)
    span = _fields(m["entries"], "manifest entries", {"first", "end"})
    first, end = _int(span["first"], "entries first"), _int(span["end"], "entries end")
    if end < first:
        raise FormatError("manifest entries end before they start")
    if end >= size:
        raise LogError(
            f"the checkpoint (size {size}) does not hold entry {end}, the first after the period: it was "
            "signed before the period closed in the log (another period's checkpoint)"
        )
    suppression = _fields(m["suppression"], "manifest suppression", {"rule", "threshold"})
    if suppression["rule"] != SUPPRESSION_RULE:
        raise FormatError(f"unknown suppression rule {suppression['rule']!r}")
    threshold = _int(suppression["threshold"], "suppression threshold", 1)
    lo, hi = carried_range(first, end)
    proof = _fields(
        parse_canonical(bundle.read("proof.json")), "proof.json", {"size", "from", "to", "earlier", "hashes"}
    )
    earlier = proof["earlier"]
    if (
        (proof["size"], proof["from"], proof["to"]) != (size, lo, hi)
        or not isinstance(proof["hashes"], list)
        or not isinstance(earlier, list)
        or any(type(x) is not int for x in earlier)
        or earlier != sorted(set(earlier))
        or (earlier and not (0 <= earlier[0] and earlier[-1] < lo))
    ):
        raise FormatError(f"proof.json is not a proof of entries [{lo}, {hi}) and earlier ones in the tree of size "
                          f"{size}")
    seqs = [*earlier, *range(lo, hi)]

    agg = Aggregator()
    records = _Peek(_rows(bundle, "records.jsonl", RECORDS))
    events = _Peek(_rows(bundle, "signals.jsonl", SIGNALS))
    disputes = _Peek(_rows(bundle, "disputes.jsonl", DISPUTES))
    leaves: list[bytes] = []
    opened: dict[str, Opened] = {}  # the disputes opened in the carried entries, by id
    previous: AuditEntry | None = None
    n_records = n_events = n_disputes = 0
    for n, line in enumerate(bundle.lines("entries.jsonl")):
        if n >= len(seqs):
            raise LogError(f"entries.jsonl holds more than the {len(seqs)} entries the proof covers")
        seq = seqs[n]
        row = _fields(parse_json(line), f"entries.jsonl line {n + 1}", {"seq", "entry"})
        if row["seq"] != seq:
            raise LogError(f"entries.jsonl line {n + 1}: seq {row['seq']}, expected {seq}")
        data = b64decode(row["entry"], "entry")
        e = parse_entry(data)
        if e.seq != seq:
            raise LogError(f"entry {seq}: its body says seq {e.seq}")
        if previous is not None and e.time < previous.time:
            raise LogError(f"entry {seq}: time goes backwards")
        previous = e
        leaves.append(leaf_hash(data))
        inside = first <= seq < end
        if inside != (period.start <= e.time < period.end):
            raise LogError(
                f"entry {seq} at {format_time(e.time)} is {'in' if inside else 'outside'} the bundle's entries "
                f"but {'outside' if inside else 'in'} the period {period.label}: the period's entries are not "
                "exactly these"
            )
        if e.action == "dispute.open":
            opened[e.subject.split("/", 1)[-1]] = Opened.of(e)
        for left, what in ((records, "record"), (events, "signal event"), (disputes, "dispute event")):
            if (r := left.peek()) is not None and r[0] < seq:
                raise LogError(f"{what} of audit entry {r[0]}: that entry is not one of the period in the log that "
                               f"makes a {what}")
        if not inside:
            continue
        agg.entry(e)
        time = _iso(e.time)
        wanted = _entry_reports(e)
        got = []
        while (r := records.peek()) is not None and r[0] == seq:
            rec = records.take()
            seconds = _check_record(rec, e, time, f"record of entry {seq} ({rec[_R_SHA]})")
            got.append(rec[_R_SHA])
            agg.record(rec, seconds)
        if sorted(got) != wanted:
            raise LogError(
                f"entry {seq} ({e.action}) records {len(wanted)} report version(s), the bundle has {len(got)} "
                "matching records: a record was left out, added or altered"
            )
        n_records += len(got)
        dispute = None
        kind = dispute_event(e)
        if kind is not None:
            dispute = _check_dispute(e, kind, time, opened, disputes, agg)
            n_disputes += 1
        n_events += _check_signal_events(e, dispute, events, agg)
    if len(leaves) != len(seqs):
        raise LogError(f"entries.jsonl holds {len(leaves)} entries, the proof covers {len(seqs)}")
    for left, what in ((records, "record"), (events, "signal event"), (disputes, "dispute event")):
        r = left.peek()
        if r is not None:
            raise LogError(f"{what} of audit entry {r[0]}: that entry is not in the period in the log")
    hashes = [b64decode(h, "proof hash") for h in proof["hashes"]]
    if multiproof_root(lo, leaves, size, hashes, earlier) != root:
        raise RootMismatchError(
            "the carried entries and proof do not lead to the checkpoint's root: an entry was edited, or the "
            "checkpoint is another log's or another period's"
        )
    counts = {"records": n_records, "signal_events": n_events, "dispute_events": n_disputes, "entries": end - first}
    if m["counts"] != counts:
        raise FormatError(f"manifest counts {m['counts']} differ from the bundle's {counts}")
    published = agg.published(threshold)
    expected_doc = aggregates_document(period, threshold, published)
    if parse_canonical(bundle.read("aggregates.json")) != expected_doc:
        raise FormatError("aggregates.json differs from the aggregates recomputed from the records and entries")
    if bundle.read("aggregates.csv") != aggregates_csv(published).encode():
        raise FormatError("aggregates.csv differs from the aggregates recomputed from the records and entries")
    verdict = (
        f"OK: export {m['export']} of {m['hub']} for {period.label}: {n_records} records, {n_events} signal events, "
        f"{n_disputes} dispute events, {end - first} entries [{first}, {end}) (and {len(earlier)} earlier) in the "
        f"signed audit checkpoint of size {size}; aggregates recomputed under {SUPPRESSION_RULE} (threshold "
        f"{threshold}); key set v{keyset.version}"
    )
    return ExportReport(True, verdict, n_records, n_events, end - first, published, [], n_disputes)


def _check_dispute(
    e: AuditEntry, kind: str, time: str, opened: Mapping[str, Opened], rows: _Peek, agg: Aggregator
) -> Opened:
    """The one dispute row of a dispute entry, against the entry and the carried entry that opened it."""
    seq = e.seq
    dispute_id = e.subject.split("/", 1)[-1] if kind == "opened" else str(e.details.get("dispute"))
    o = opened.get(dispute_id)
    if o is None or e.subject != f"dispute/{dispute_id}":
        raise LogError(f"entry {seq} ({e.action}) decides a dispute whose dispute.open entry the bundle does not "
                       "carry")
    row = rows.take() if (r := rows.peek()) is not None and r[0] == seq else None
    if row is None:
        raise LogError(f"entry {seq} ({e.action}) has no dispute event in disputes.jsonl: one was left out")
    if row != dispute_row(seq, kind, time, row[2], o):
        raise LogError(f"the dispute event of entry {seq} is not what that entry and the dispute's dispute.open "
                       f"entry {o.seq} record")
    if (r := rows.peek()) is not None and r[0] == seq:
        raise LogError(f"entry {seq} has more than one dispute event")
    agg.dispute(row)
    return o


def _check_signal_events(e: AuditEntry, dispute: Opened | None, rows: _Peek, agg: Aggregator) -> int:
    """The signal events of one entry of the period, against what the entry states; returns how many."""
    seq = e.seq
    expect = signal_events(e)
    count = 0
    while (r := rows.peek()) is not None and r[0] == seq:
        ev = rows.take()
        if (
            expect is None
            or ev[1] != expect.event
            or (expect.collections is not None and ev[3] not in expect.collections)
            or (expect.signal_type is not None and ev[4] != expect.signal_type)
            or (expect.of_dispute and (dispute is None or ev[3] != dispute.collection))
        ):
            raise LogError(f"signal event of entry {seq} is not what that entry ({e.action}) records")
        agg.signal(ev)
        count += 1
    if expect is not None and count != expect.count:
        raise LogError(f"entry {seq} ({e.action}) records {expect.count} signal(s), the bundle has {count} events")
    return count


def verify_bundle(path: str, pinned: str | None = None) -> ExportReport:
    """Verify a bundle zip; `pinned`: hex SHA-256 of key set v1's payload (None: trust on first use).

    Every failure is a FAIL report naming what does not hold."""
    try:
        return _verify(str(path), pinned)
    except VerificationError as e:
        return ExportReport(False, f"FAIL ({type(e).__name__}): {e}")
    except (OSError, zipfile.BadZipFile, KeyError, TypeError, ValueError, csv.Error, EOFError) as e:
        return ExportReport(False, f"FAIL (FormatError): cannot read the bundle: {e}")
