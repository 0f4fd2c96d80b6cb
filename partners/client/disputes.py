"""Disputes from the kit: contest a signal that a report of this kit matched, and read what staff decided.

`POST /v1/disputes` is idempotent under the partner's own id, so the kit derives the id from the report it
disputes (`dispute_key`): sending the same dispute again returns the first one and writes nothing. Responses
are parsed by their exact keys (hub/governance/schemas.py `dispute_view`, `decision_view`; docs/api.md,
"Disputes, cases and governance") and anything else is refused as `MalformedResponseError`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy import select

from audit.canonical import fields, parse_json
from audit.errors import VerificationError
from partners.client.errors import MalformedResponseError, PartnerError
from partners.client.mirror import Mirror
from partners.client.reports import ReportQueue, ledger
from partners.client.transport import Caps, Transport, check_status

REASONS = ("false_positive", "not_in_scope", "consent", "low_quality", "other")
STATUSES = ("open", "awaiting_confirmation", "quarantined", "upheld", "rejected", "released")
MAX_KEY = 128  # the hub's limit on a dispute's own id
MAX_NOTE = 500

DECISION_KEYS = frozenset({"id", "action", "state", "reason", "at", "confirms", "audit_seq"})
# A listed dispute has no decisions; `GET /v1/disputes/{id}` and `POST /v1/disputes` add them.
LISTED_KEYS = frozenset({"id", "source", "signal", "collection", "reason", "note", "status", "opened_at", "answer",
                         "answered_at", "decided_at", "audit_seq"})
DISPUTE_KEYS = LISTED_KEYS | {"decisions"}
_CAP = Caps().small


class DisputeError(PartnerError):
    """A dispute cannot be made from what the kit holds (no such report, a signal it cannot name)."""

    check = "dispute"


@dataclass(frozen=True)
class Decision:
    id: str
    action: str  # uphold, confirm, reject, quarantine, release
    state: str  # effective, or proposed (an uphold waiting for a second member of staff)
    reason: str
    at: str
    confirms: str | None
    audit_seq: int


@dataclass(frozen=True)
class Dispute:
    id: str
    source: str
    signal: str
    collection: str
    reason: str
    note: str | None
    status: str
    opened_at: str
    answer: str | None
    answered_at: str | None
    decided_at: str | None
    audit_seq: int
    decisions: tuple[Decision, ...] | None  # None in a list


@dataclass(frozen=True)
class Reported:
    """A signal a report of this kit matched: the report, its collection and the signal's id."""

    report_id: str
    collection: str
    signal: str


def dispute_key(report_id: str) -> str:
    """The kit's own id for a dispute about what a report matched: the same report, the same dispute."""
    key = f"report-{report_id}"
    if len(key) <= MAX_KEY and key.isascii() and key.isprintable():
        return key
    return "report-sha256-" + hashlib.sha256(report_id.encode()).hexdigest()


def reported_signals(queue: ReportQueue, mirror_url: str | None, *, content_ref: str | None = None,
                     report_ids: tuple[str, ...] = ()) -> list[Reported]:
    """The signals the kit's reports (for a content reference, or by id) matched, each once, oldest first.

    A report that named its signal by value is resolved to the id through the mirror's active signals (the
    mirror at `mirror_url` is opened only then)."""
    query = select(ledger.c.report_id, ledger.c.collection, ledger.c.signal)
    if content_ref is not None:
        query = query.where(ledger.c.content_ref == content_ref)
    else:
        query = query.where(ledger.c.report_id.in_(list(report_ids)))
    with queue.engine.connect() as conn:
        rows = list(conn.execute(query.order_by(ledger.c.created_at, ledger.c.report_id)))
    if content_ref is None:
        missing = sorted(set(report_ids) - {r.report_id for r in rows})
        if missing:
            raise DisputeError(f"no report {missing[0]!r} was made by this kit")
    elif not rows:
        raise DisputeError(f"no report was made for reference {content_ref!r}")
    found: dict[tuple[str, str], Reported] = {}
    for rid, collection, raw in rows:
        signal = json.loads(raw)
        sid = signal.get("id") or _by_value(mirror_url, collection, signal.get("type"), signal.get("value"), rid)
        found.setdefault((collection, sid), Reported(rid, collection, sid))
    return list(found.values())


def _by_value(mirror_url: str | None, collection: str, kind: Any, value: Any, rid: str) -> str:
    if mirror_url is not None and isinstance(kind, str) and isinstance(value, str):
        mirror = Mirror.open(mirror_url)
        try:
            for s in mirror.active_signals(collection, types=[kind]):
                if s.value == value.lower():
                    return s.signal_id
        finally:
            mirror.close()
    raise DisputeError(f"report {rid!r} named its signal by value, and the mirror holds no active signal of it")


# --- the hub's answers ------------------------------------------------------------------------------------


def _str(data: dict[str, Any], key: str, what: str, *, nullable: bool = False) -> Any:
    value = data[key]
    if (value is None and nullable) or isinstance(value, str):
        return value
    raise MalformedResponseError(f"{what}: {key} is not a string{' or null' if nullable else ''}")


def _int(data: dict[str, Any], key: str, what: str) -> int:
    value = data[key]
    if type(value) is not int:
        raise MalformedResponseError(f"{what}: {key} is not an integer")
    return value


def _exact(data: Any, what: str, keys: frozenset[str]) -> dict[str, Any]:
    """`data` as an object with exactly `keys`, or `MalformedResponseError` (as the sync client parses)."""
    try:
        return fields(data, what, set(keys))
    except VerificationError as e:
        raise MalformedResponseError(str(e)) from e


def parse_decision(data: Any) -> Decision:
    d = _exact(data, "a decision", DECISION_KEYS)
    return Decision(
        _str(d, "id", "a decision"), _str(d, "action", "a decision"), _str(d, "state", "a decision"),
        _str(d, "reason", "a decision"), _str(d, "at", "a decision"),
        _str(d, "confirms", "a decision", nullable=True), _int(d, "audit_seq", "a decision"),
    )


def parse_dispute(data: Any, *, listed: bool = False) -> Dispute:
    """A dispute exactly as the hub serves it (without `decisions` in a list)."""
    what = "a dispute"
    d = _exact(data, what, LISTED_KEYS if listed else DISPUTE_KEYS)
    status = _str(d, "status", what)
    if status not in STATUSES:
        raise MalformedResponseError(f"{what}: unknown status {status!r}")
    decisions = None
    if not listed:
        if not isinstance(d["decisions"], list):
            raise MalformedResponseError(f"{what}: decisions is not a list")
        decisions = tuple(parse_decision(x) for x in d["decisions"])
    return Dispute(
        _str(d, "id", what), _str(d, "source", what), _str(d, "signal", what), _str(d, "collection", what),
        _str(d, "reason", what), _str(d, "note", what, nullable=True), status, _str(d, "opened_at", what),
        _str(d, "answer", what, nullable=True), _str(d, "answered_at", what, nullable=True),
        _str(d, "decided_at", what, nullable=True), _int(d, "audit_seq", what), decisions,
    )


def _body(body: bytes) -> Any:
    try:
        return parse_json(body)
    except VerificationError as e:
        raise MalformedResponseError(str(e)) from e


# --- requests ---------------------------------------------------------------------------------------------


def open_dispute(transport: Transport, *, key: str, signal: str, reason: str,
                 note: str | None = None) -> tuple[Dispute, bool]:
    """`POST /v1/disputes`; returns the dispute and whether it is new (201) or the first under `key` (200)."""
    if reason not in REASONS:
        raise DisputeError(f"reason must be one of {', '.join(REASONS)}")
    if note is not None and not 0 < len(note) <= MAX_NOTE:
        raise DisputeError(f"a note has 1-{MAX_NOTE} characters")
    body: dict[str, Any] = {"id": key, "signal": signal, "reason": reason}
    if note is not None:
        body["note"] = note
    response = check_status(transport.request("POST", "/v1/disputes", json_body=body, max_bytes=_CAP),
                            "POST /v1/disputes")
    if response.status not in (200, 201):
        raise MalformedResponseError(f"POST /v1/disputes answered {response.status}, not 200 or 201")
    return parse_dispute(_body(response.body)), response.status == 201


def get_dispute(transport: Transport, dispute_id: str) -> Dispute:
    """`GET /v1/disputes/{id}`: a dispute this partner opened or whose signal it contributed, with decisions."""
    path = f"/v1/disputes/{quote(dispute_id, safe='')}"
    response = check_status(transport.request("GET", path, max_bytes=_CAP), f"GET {path}")
    return parse_dispute(_body(response.body))


def list_disputes(transport: Transport, *, contributed: bool = False, status: str | None = None) -> list[Dispute]:
    """`GET /v1/disputes`: this partner's disputes, or those on signals it contributed; newest first."""
    params = {"mine": "contributed" if contributed else "opened", **({"status": status} if status else {})}
    response = check_status(transport.request("GET", "/v1/disputes", params=params, max_bytes=_CAP),
                            "GET /v1/disputes")
    page = _exact(_body(response.body), "a dispute list", frozenset({"disputes"}))
    if not isinstance(page["disputes"], list):
        raise MalformedResponseError("a dispute list: disputes is not a list")
    return [parse_dispute(x, listed=True) for x in page["disputes"]]
