"""The kit's report queue: match reports and outcome changes wait in a local SQLite file until the hub has them.

Nothing is sent directly. `enqueue_*` writes to `reports.db` in the kit's home (committed before it returns),
and `flush(transport)` sends what waits, oldest first: new reports in requests of up to 1,000
(`POST /v1/reports`), then outcome changes one `PATCH /v1/reports/{id}` each. A row is marked sent only
after a 2xx. When the hub is unreachable, rate-limits or fails (5xx), the rows stay and the next flush sends
them again; the hub makes that safe: a report is idempotent under its id, and repeating the outcome a report
already has writes nothing. So a report reaches the hub exactly once however often it is retried.
An item the hub refuses for good (422) is marked rejected with the hub's reason, never retried.

The content reference (a post or upload id of the partner's own) stays in this file so that
`hashfed-partner report --ref ...` can find the reports made for it; the hub stores only a keyed digest.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from audit.canonical import format_time
from partners.client.errors import AuthError, PartnerError, TransportError
from partners.client.transport import Transport

QUEUE_FILE = "reports.db"
MAX_PER_REQUEST = 1000
OUTCOMES = ("pending_review", "blocked", "removed", "restricted", "no_action", "false_positive")
SURFACES = ("upload", "existing_content", "account")
_RESPONSE_CAP = 4 << 20  # bytes: the answer to 1,000 reports is ~200 KiB

metadata = MetaData()

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # the send order
    Column("kind", String(10), nullable=False),  # "report" (POST) or "outcome" (PATCH)
    Column("report_id", String(128), nullable=False, index=True),
    Column("body", Text, nullable=False),  # JSON exactly as it will be sent
    Column("enqueued_at", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("sent_at", String(20)),
    Column("rejected_at", String(20)),  # the hub refused it for good (reason in last_error)
)

ledger = Table(
    "ledger",
    metadata,
    Column("report_id", String(128), primary_key=True),
    Column("content_ref", Text, nullable=False, index=True),
    Column("collection", String(200), nullable=False),
    Column("signal", String(200), nullable=False),
    Column("created_at", String(20), nullable=False),
)


class ReportQueueError(PartnerError):
    """A report cannot be queued (unknown outcome, unknown report id, unreadable queue file)."""

    check = "report-queue"


@dataclass(frozen=True)
class MatchedSignal:
    """One signal a local match found: where it lives, the seq that brought it, how far the query was."""

    collection: str
    signal_id: str
    seq: int
    distance: int


@dataclass(frozen=True)
class FlushResult:
    """What one flush did; `error` says why it stopped early (the rest waits for the next flush)."""

    sent: int
    rejected: int
    waiting: int
    error: str | None = None


def _now() -> str:
    return format_time(datetime.now(UTC))


def _time(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return format_time(value)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # a queued report survives a power cut
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class ReportQueue:
    """The local outbox of reports and outcome changes (one SQLite file)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    @classmethod
    def open(cls, path: str | Path) -> ReportQueue:
        """Open (creating it if needed) the queue file at `path`."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(f"sqlite:///{p.resolve()}")
        event.listen(engine, "connect", _sqlite_pragmas)
        try:
            return cls(engine)
        except SQLAlchemyError as e:
            raise ReportQueueError(f"{p}: cannot open the report queue: {e.__class__.__name__}") from e

    def close(self) -> None:
        self.engine.dispose()

    # --- queueing ------------------------------------------------------------------------------------------

    def enqueue_report(
        self,
        *,
        collection: str,
        seq: int,
        distance: int,
        surface: str,
        content_ref: str,
        signal_id: str | None = None,
        signal_type: str | None = None,
        signal_value: str | None = None,
        outcome: str = "pending_review",
        matched_at: datetime | str | None = None,
        actioned_at: datetime | str | None = None,
        automated_detection: bool = True,
        automated_decision: bool = True,
        report_id: str | None = None,
    ) -> str:
        """Queue one report (by signal id, or type and value); return its id (a new UUID unless given)."""
        return self._enqueue_reports(
            [
                _report_body(
                    report_id or str(uuid.uuid4()), collection, seq, distance, surface, content_ref,
                    signal_id, signal_type, signal_value, outcome, matched_at, actioned_at,
                    automated_detection, automated_decision,
                )
            ]
        )[0]

    def enqueue_matches(
        self,
        matches: Iterable[MatchedSignal],
        *,
        content_ref: str,
        surface: str = "upload",
        matched_at: datetime | str | None = None,
        automated_detection: bool = True,
    ) -> list[str]:
        """Queue a `pending_review` report for each signal one piece of content matched; return their ids.

        For `hashfed-partner match ... --report` (the matcher's command) and for partners' own pipelines.
        """
        return self._enqueue_reports(
            [
                _report_body(
                    str(uuid.uuid4()), m.collection, m.seq, m.distance, surface, content_ref, m.signal_id,
                    None, None, "pending_review", matched_at, None, automated_detection, True,
                )
                for m in matches
            ]
        )

    def _enqueue_reports(self, bodies: Sequence[dict[str, Any]]) -> list[str]:
        now = _now()
        with self.engine.begin() as conn:
            for body in bodies:
                ref = body["content_ref"]
                conn.execute(
                    insert(outbox).values(
                        kind="report", report_id=body["id"], body=json.dumps(body), enqueued_at=now, attempts=0
                    )
                )
                conn.execute(
                    insert(ledger).values(
                        report_id=body["id"], content_ref=ref, collection=body["collection"],
                        signal=json.dumps(body["signal"], sort_keys=True), created_at=now,
                    )
                )
        return [b["id"] for b in bodies]

    def enqueue_outcome(
        self,
        report_id: str,
        outcome: str,
        *,
        actioned_at: datetime | str | None = None,
        automated_decision: bool = False,
    ) -> None:
        """Queue a new outcome for a report this kit made (actioned now unless given)."""
        if outcome not in OUTCOMES:
            raise ReportQueueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        body = {
            "outcome": outcome,
            "actioned_at": None if outcome == "pending_review" else _time(actioned_at) or _now(),
            "automated_decision": automated_decision,
        }
        with self.engine.begin() as conn:
            if conn.scalar(select(ledger.c.report_id).where(ledger.c.report_id == report_id)) is None:
                raise ReportQueueError(f"no report {report_id!r} was made by this kit")
            conn.execute(
                insert(outbox).values(
                    kind="outcome", report_id=report_id, body=json.dumps(body), enqueued_at=_now(), attempts=0
                )
            )

    def reports_for_ref(self, content_ref: str) -> list[str]:
        """Ids of the reports this kit made for a content reference, oldest first."""
        with self.engine.connect() as conn:
            return list(
                conn.scalars(
                    select(ledger.c.report_id)
                    .where(ledger.c.content_ref == content_ref)
                    .order_by(ledger.c.created_at, ledger.c.report_id)
                )
            )

    def waiting(self) -> int:
        """Rows not yet accepted by the hub (and not rejected)."""
        with self.engine.connect() as conn:
            return int(
                conn.scalar(
                    select(func.count())
                    .select_from(outbox)
                    .where(outbox.c.sent_at.is_(None), outbox.c.rejected_at.is_(None))
                )
                or 0
            )

    def rejected(self) -> list[tuple[str, str, str]]:
        """(kind, report id, the hub's reason) of every rejected row."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.kind, outbox.c.report_id, outbox.c.last_error)
                .where(outbox.c.rejected_at.is_not(None))
                .order_by(outbox.c.id)
            )
            return [(k, r, e or "") for k, r, e in rows]

    # --- sending -------------------------------------------------------------------------------------------

    def flush(self, transport: Transport) -> FlushResult:
        """Send what waits, oldest first; stop at the first failure that a later retry may cure."""
        sent = rejected = 0
        error: str | None = None
        while error is None:
            rows = self._next("report", MAX_PER_REQUEST)
            if not rows:
                break
            ok, bad, error = self._send_reports(transport, rows)
            sent, rejected = sent + ok, rejected + bad
        if error is None:
            for row in self._next("outcome", None):
                ok, bad, error = self._send_outcome(transport, row)
                sent, rejected = sent + ok, rejected + bad
                if error is not None:
                    break
        return FlushResult(sent, rejected, self.waiting(), error)

    def _next(self, kind: str, limit: int | None) -> list[Any]:
        query = (
            select(outbox.c.id, outbox.c.report_id, outbox.c.body)
            .where(outbox.c.kind == kind, outbox.c.sent_at.is_(None), outbox.c.rejected_at.is_(None))
            .order_by(outbox.c.id)
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    def _mark(self, ids: Sequence[int], **values: Any) -> None:
        if not ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(outbox).where(outbox.c.id.in_(list(ids))).values(attempts=outbox.c.attempts + 1, **values)
            )

    def _send_reports(self, transport: Transport, rows: Sequence[Any]) -> tuple[int, int, str | None]:
        ids = [r.id for r in rows]
        try:
            response = transport.request(
                "POST", "/v1/reports", json_body={"reports": [json.loads(r.body) for r in rows]},
                max_bytes=_RESPONSE_CAP,
            )
        except (TransportError, AuthError) as e:  # unreachable, or no token yet: retry later
            self._mark(ids, last_error=str(e))
            return 0, 0, str(e)
        if 200 <= response.status < 300:
            self._mark(ids, sent_at=_now(), last_error=None)
            return len(ids), 0, None
        reason = _reason(response.body)
        if response.status == 422:
            items = _item_errors(response.body)
            named = {i: problems for i, problems in items.items() if 0 <= i < len(rows)}
            for index, problems in named.items():
                self._mark([rows[index].id], rejected_at=_now(), last_error=problems)
            if named:
                return 0, len(named), None  # the others go again in the next round
        if response.status in (400, 413, 422):
            self._mark(ids, rejected_at=_now(), last_error=reason)
            return 0, len(ids), None
        message = f"POST /v1/reports: the hub answered {response.status} ({reason})"
        self._mark(ids, last_error=message)
        return 0, 0, message

    def _send_outcome(self, transport: Transport, row: Any) -> tuple[int, int, str | None]:
        with self.engine.connect() as conn:
            create = conn.execute(
                select(outbox.c.sent_at, outbox.c.rejected_at).where(
                    outbox.c.kind == "report", outbox.c.report_id == row.report_id
                )
            ).first()
        if create is not None and create.rejected_at is not None:
            self._mark([row.id], rejected_at=_now(), last_error="the report itself was rejected")
            return 0, 1, None
        if create is not None and create.sent_at is None:
            return 0, 0, f"report {row.report_id} is not sent yet"
        path = f"/v1/reports/{quote(row.report_id, safe='')}"
        try:
            response = transport.request("PATCH", path, json_body=json.loads(row.body), max_bytes=_RESPONSE_CAP)
        except (TransportError, AuthError) as e:  # unreachable, or no token yet: retry later
            self._mark([row.id], last_error=str(e))
            return 0, 0, str(e)
        if 200 <= response.status < 300:
            self._mark([row.id], sent_at=_now(), last_error=None)
            return 1, 0, None
        reason = _reason(response.body)
        if response.status in (400, 404, 422):
            self._mark([row.id], rejected_at=_now(), last_error=f"{response.status}: {reason}")
            return 0, 1, None
        message = f"PATCH {path}: the hub answered {response.status} ({reason})"
        self._mark([row.id], last_error=message)
        return 0, 0, message


def _report_body(
    report_id: str,
    collection: str,
    seq: int,
    distance: int,
    surface: str,
    content_ref: str,
    signal_id: str | None,
    signal_type: str | None,
    signal_value: str | None,
    outcome: str,
    matched_at: datetime | str | None,
    actioned_at: datetime | str | None,
    automated_detection: bool,
    automated_decision: bool,
) -> dict[str, Any]:
    if outcome not in OUTCOMES:
        raise ReportQueueError(f"outcome must be one of {', '.join(OUTCOMES)}")
    if surface not in SURFACES:
        raise ReportQueueError(f"surface must be one of {', '.join(SURFACES)}")
    if not content_ref:
        raise ReportQueueError("a report needs the content reference it was made for")
    if signal_id is not None:
        signal: dict[str, str] = {"id": signal_id}
    elif signal_type is not None and signal_value is not None:
        signal = {"type": signal_type, "value": signal_value.lower()}
    else:
        raise ReportQueueError("name the signal by id, or by type and value")
    body: dict[str, Any] = {
        "id": report_id,
        "signal": signal,
        "collection": collection,
        "seq": seq,
        "distance": distance,
        "outcome": outcome,
        "matched_at": _time(matched_at) or _now(),
        "automated_detection": automated_detection,
        "automated_decision": automated_decision,
        "surface": surface,
        "content_ref": content_ref,
    }
    if outcome != "pending_review":
        body["actioned_at"] = _time(actioned_at) or _now()
    return body


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _reason(body: bytes) -> str:
    data = _json(body)
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])[:500]
    return "no message"


def _item_errors(body: bytes) -> dict[int, str]:
    """{index: the hub's reasons} from a 422's `errors.reports`."""
    data = _json(body)
    errors = data.get("errors") if isinstance(data, dict) else None
    items = errors.get("reports") if isinstance(errors, dict) else None
    if not isinstance(items, dict):
        return {}
    out: dict[int, str] = {}
    for key, problems in items.items():
        if isinstance(key, str) and key.isdigit():
            out[int(key)] = "; ".join(map(str, problems)) if isinstance(problems, list) else str(problems)
    return out
