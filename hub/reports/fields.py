"""A report's fields, declared once: the API schemas, the bulk parser, the stored row, the report document and
the JSON view are all derived from the tables below.

A bulk request carries up to 1,000 reports, so the service checks items with `check` (plain comparisons
compiled from each field) rather than a marshmallow load of every item; the schemas document the same limits.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hub.reports.models import MAX_REPORT_ID_LENGTH, OUTCOMES, SURFACES

MAX_CONTENT_REF_LENGTH = 512
MAX_SEQ = 2**63 - 1  # the largest batch seq a BIGINT column holds
PENDING = "pending_review"


def whole_second(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(microsecond=0)


def parse_time(value: Any) -> datetime:
    """An RFC 3339 time with a zone (`Z` or an offset), to whole UTC seconds; ValueError otherwise."""
    if not isinstance(value, str) or not 19 <= len(value) <= 35 or "T" not in value:
        raise ValueError("an RFC 3339 time such as 2026-01-31T12:00:00Z")
    t = datetime.fromisoformat(value)
    if t.tzinfo is None:
        raise ValueError("a time needs a zone (Z or an offset)")
    try:
        return whole_second(t)
    except OverflowError as e:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC (9999 likewise after)
        raise ValueError("a time within years 1-9999 in UTC") from e


@dataclass(frozen=True)
class Field:
    """One field of a report: its JSON name, the column that stores it, its kind and limits.

    `kind` is "text" (a string of `low`-`high` characters, matching `pattern` if given), "integer" (`low` to
    `high`), "boolean", "choice" (one of `choices`) or "time" (RFC 3339 with a zone; None when `nullable`).
    `rule` is the problem's text for an item that breaks the field; each kind has a default.
    """

    name: str
    column: str
    kind: str
    low: int = 0
    high: int = 0
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    nullable: bool = False
    description: str = ""
    rule: str = ""
    check: Callable[[Any], tuple[Any, str | None]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "check", _checker(self))


def _checker(f: Field) -> Callable[[Any], tuple[Any, str | None]]:
    """`check(value) -> (parsed value, None)` or `(None, problem)`, for the bulk parser."""
    if f.kind == "text":
        low, high = f.low, f.high
        match = None if f.pattern is None else re.compile(f.pattern).fullmatch
        rule = f.rule or f"{f.name} must be a string of {low}-{high} characters"

        def text(value: Any) -> tuple[Any, str | None]:
            if type(value) is str and low <= len(value) <= high and (match is None or match(value)):
                return value, None
            return None, rule

        return text
    if f.kind == "integer":
        low, high = f.low, f.high
        rule = f.rule or f"{f.name} must be an integer from {low} to {high}"

        def integer(value: Any) -> tuple[Any, str | None]:
            return (value, None) if type(value) is int and low <= value <= high else (None, rule)

        return integer
    if f.kind == "boolean":
        rule = f.rule or f"{f.name} must be true or false"

        def boolean(value: Any) -> tuple[Any, str | None]:
            return (value, None) if type(value) is bool else (None, rule)

        return boolean
    if f.kind == "choice":
        choices = frozenset(f.choices)
        rule = f.rule or f"{f.name} must be one of {', '.join(f.choices)}"

        def choice(value: Any) -> tuple[Any, str | None]:
            return (value, None) if type(value) is str and value in choices else (None, rule)

        return choice
    if f.kind == "time":
        name, nullable = f.name, f.nullable

        def time(value: Any) -> tuple[Any, str | None]:
            if value is None and nullable:
                return None, None
            try:
                return parse_time(value), None
            except ValueError as e:
                return None, f"{name}: {e}"

        return time
    raise ValueError(f"unknown field kind {f.kind}")


# What a report says about its match: fixed when the report is made.
MATCH = (
    Field(
        "id", "report_id", "text", 1, MAX_REPORT_ID_LENGTH, pattern=r"[A-Za-z0-9][A-Za-z0-9._:-]*",
        description="the partner's own report id",
        rule=f"id must be 1-{MAX_REPORT_ID_LENGTH} letters, digits and ._:- (starting with a letter or digit)",
    ),
    Field("collection", "collection_id", "text", 1, 36, rule="collection must be a collection id"),
    Field(
        "seq", "seq", "integer", 1, MAX_SEQ,
        description="the collection's batch seq in which the partner received the signal",
        rule="seq must be a positive integer: the batch in which the signal was received",
    ),
    Field("distance", "distance", "integer", 0, 256, description="0 for md5/sha256"),
    Field("surface", "surface", "choice", choices=SURFACES),
    Field("matched_at", "matched_at", "time", description="not in the future"),
    Field("automated_detection", "automated_detection", "boolean"),
)
# Its outcome: the body of PATCH /v1/reports/{id}, and each version of its history.
OUTCOME = (
    Field("outcome", "outcome", "choice", choices=OUTCOMES),
    Field(
        "actioned_at", "actioned_at", "time", nullable=True,
        description=f"null for {PENDING}, required otherwise; not before matched_at",
    ),
    Field("automated_decision", "automated_decision", "boolean"),
)
# The partner's content reference: sent with the report, stored only as a keyed digest.
CONTENT_REF = Field(
    "content_ref", "content_ref_digest", "text", 1, MAX_CONTENT_REF_LENGTH,
    description="the partner's own reference; stored only as an HMAC under the hub secret",
)
# A submitted item: these, and `signal` (`{"id"}` or `{"type", "value"}`, checked by the service).
SUBMITTED = (*MATCH, *OUTCOME, CONTENT_REF)
ITEM_KEYS = frozenset({f.name for f in SUBMITTED} | {"signal"})
OUTCOME_KEYS = frozenset(f.name for f in OUTCOME)
# What the hub adds when it serves a report (GET, and the answer to PATCH).
SERVED = (
    Field("signal", "signal_id", "text", description="the signal id"),
    Field("content_ref_digest", "content_ref_digest", "text"),
    Field("version", "version", "integer"),
    Field("received_at", "received_at", "time"),
    Field("updated_at", "updated_at", "time"),
)
# What each version of a report's outcome history adds to its outcome.
HISTORY = (
    Field("version", "version", "integer"),
    Field("recorded_at", "recorded_at", "time"),
    Field("sha256", "report_sha256", "text", description="SHA-256 of the report's canonical JSON at this version"),
    Field("audit_seq", "audit_seq", "integer"),
)
