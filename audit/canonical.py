"""RFC 8785 canonical JSON for signed payloads, and RFC 3339 UTC times with second precision."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import rfc8785

from audit.errors import FormatError

_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def _check_no_floats(obj: Any) -> None:
    if isinstance(obj, float):
        raise FormatError("signed payloads carry no floats")
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise FormatError("JSON object keys are strings")
            _check_no_floats(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            _check_no_floats(v)


def canonical_json(obj: Any) -> bytes:
    """The RFC 8785 canonical bytes of `obj`; floats are refused (never `json.dumps(sort_keys=True)`)."""
    _check_no_floats(obj)
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as e:
        raise FormatError(f"cannot canonicalize: {e}") from e


def _no_float(value: str) -> Any:
    raise FormatError("signed payloads carry no floats")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise FormatError("duplicate key in JSON object")
    return out


def parse_canonical(data: bytes) -> Any:
    """Parse JSON that must be exactly in RFC 8785 canonical form (one value, one encoding)."""
    obj = parse_json(data)
    if canonical_json(obj) != data:
        raise FormatError("payload is not RFC 8785 canonical JSON")
    return obj


def parse_json(data: bytes) -> Any:
    """Parse UTF-8 JSON strictly: no floats, no duplicate keys, no NaN."""
    try:
        return json.loads(
            data.decode("utf-8"),
            parse_float=_no_float,
            parse_constant=_no_float,
            object_pairs_hook=_no_duplicates,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise FormatError(f"invalid JSON: {e}") from e


def format_time(t: datetime) -> str:
    """`2025-01-31T12:00:00Z`: RFC 3339, UTC, whole seconds (sub-seconds are dropped)."""
    if t.tzinfo is None:
        raise FormatError("times must be timezone-aware")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime:
    """Parse exactly the form `format_time` writes, to an aware UTC datetime."""
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise FormatError(f"time {value!r} is not YYYY-MM-DDTHH:MM:SSZ")
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError as e:
        raise FormatError(f"time {value!r} is not a valid date") from e


def fields(
    data: Any, what: str, required: set[str], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """`data` as an object with exactly the `required` fields plus some `optional` ones, or `FormatError`."""
    if not isinstance(data, dict):
        raise FormatError(f"{what} must be an object")
    keys = set(data)
    if not required <= keys or not keys <= required | optional:
        raise FormatError(
            f"{what} has fields {sorted(keys)}, expected {sorted(required)} (+ {sorted(optional)})"
        )
    return data


def int_field(value: Any, what: str, minimum: int = 0) -> int:
    """An integer (not a bool) >= `minimum`, or `FormatError`."""
    if type(value) is not int or value < minimum:
        raise FormatError(f"{what} must be an integer >= {minimum}")
    return value
