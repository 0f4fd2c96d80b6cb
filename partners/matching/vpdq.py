"""vPDQ, Meta's video PDQ: the wire form of a value, its frames, and the match rule on two frame lists.

A ``vpdq`` value lists a video's sampled frames (one per second by default), each as its PDQ hash, PDQ
quality and timestamp in seconds. On the wire it is python-threatexchange's serialization (``vpdq_to_json``):
a JSON array of ``"<64 hex>,<quality>,<timestamp>"`` strings. The canonical form, which the hub stores and
signs, is that array without spaces, lowercase hex and timestamps with three decimals (docs/formats.md,
"vpdq"). The vpdq tools' line form (``<frame>,<quality>,<hex>,<timestamp>`` per line) is read too.

The rule (vpdq's ``matchTwoHashBrute``, percentages as python-threatexchange reports them): frames below
quality 50 are left out on both sides and repeated hashes counted once; a query frame matches when a stored
frame lies within the PDQ threshold, and the other way round. A video matches when at least P % of the
query's unique frames and at least P % of the stored video's unique frames are matched (P per collection,
default 80). No numpy import beyond the words of the unique frames: the hub parses values with this module.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from partners.matching.errors import InvalidHashError, InvalidThresholdError
from partners.matching.signals import PDQ_HEX_LEN, U64Array, pdq_hex_to_words

DEFAULT_VPDQ_PERCENT = 80  # P of a collection whose descriptor does not set one (python-threatexchange: 80)
VPDQ_MIN_QUALITY = 50  # frames below this PDQ quality are not compared (python-threatexchange's threshold)
MAX_VPDQ_FRAMES = 7_200  # two hours at one frame per second; also keeps frame numbers within 16 bits
MAX_VPDQ_CHARS = MAX_VPDQ_FRAMES * 96  # the longest value worth parsing (a canonical frame is about 77)
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
# The canonical text exactly (format_vpdq's output): what a batch entry's value must be, checked without parsing.
_CANONICAL_FRAME = r'"[0-9a-f]{64},(?:100|[1-9]?[0-9]),(?:0|[1-9][0-9]*)\.[0-9]{3}"'
CANONICAL_VPDQ = re.compile(rf"\[{_CANONICAL_FRAME}(?:,{_CANONICAL_FRAME})*\]")
_INT = re.compile(r"[0-9]{1,3}")


class VpdqFrame(NamedTuple):
    """One sampled frame: PDQ hash (64 lowercase hex digits), PDQ quality 0..100, seconds from the start."""

    pdq: str
    quality: int
    timestamp: float


class VideoMatch(NamedTuple):
    """A stored video compared with a query video: the share of the query's unique frames matched, the share
    of the stored video's unique frames matched (both 0..100), and whether both reach the collection's P."""

    collection: str
    signal_id: int | str
    query_percent: float
    stored_percent: float
    both_sides: bool


def parse_vpdq(value: str) -> list[VpdqFrame]:
    """The frames of a ``vpdq`` value (canonical, python-threatexchange's JSON, or the vpdq line form), or
    :class:`InvalidHashError` saying what is wrong."""
    if not isinstance(value, str):
        raise InvalidHashError(f"a vpdq value is a string, got {type(value).__name__}")
    if len(value) > MAX_VPDQ_CHARS:
        raise InvalidHashError(f"a vpdq value is at most {MAX_VPDQ_CHARS} characters")
    text = value.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError as e:
            raise InvalidHashError("a vpdq value in JSON form must be an array of strings") from e
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise InvalidHashError("a vpdq value in JSON form must be an array of strings")
        frames = [_frame(i.split(","), (0, 1, 2), n) for n, i in enumerate(items)]
    else:  # vpdq-hash-video's file: frame number, quality, hash, timestamp
        frames = [_frame(line.split(","), (2, 1, 3), n, width=4) for n, line in enumerate(text.splitlines())]
    if not frames:
        raise InvalidHashError("a vpdq value lists at least one frame")
    if len(frames) > MAX_VPDQ_FRAMES:
        raise InvalidHashError(f"a vpdq value lists at most {MAX_VPDQ_FRAMES} frames, got {len(frames)}")
    for n in range(1, len(frames)):
        if frames[n].timestamp < frames[n - 1].timestamp:
            raise InvalidHashError(f"vpdq frame {n}: timestamps must not decrease")
    return frames


def _frame(parts: list[str], at: tuple[int, int, int], n: int, width: int = 3) -> VpdqFrame:
    if len(parts) != width:
        raise InvalidHashError(f"vpdq frame {n}: expected {width} comma-separated fields, got {len(parts)}")
    pdq, quality, seconds = (parts[i].strip() for i in at)
    if not _HEX64.fullmatch(pdq):
        raise InvalidHashError(f"vpdq frame {n}: the PDQ hash must be {PDQ_HEX_LEN} hex digits")
    if not _INT.fullmatch(quality) or int(quality) > 100:
        raise InvalidHashError(f"vpdq frame {n}: quality must be an integer 0..100")
    try:
        timestamp = float(seconds)
    except ValueError:
        timestamp = math.nan
    if not math.isfinite(timestamp) or timestamp < 0:
        raise InvalidHashError(f"vpdq frame {n}: the timestamp must be a number of seconds >= 0")
    return VpdqFrame(pdq.lower(), int(quality), round(timestamp, 3))


def format_vpdq(frames: Iterable[VpdqFrame]) -> str:
    """The canonical text of frames: a JSON array without spaces of ``"<hex>,<quality>,<seconds .3f>"``."""
    items = [f"{f.pdq},{f.quality},{f.timestamp:.3f}" for f in frames]
    return json.dumps(items, separators=(",", ":"))


def normalize_vpdq(value: str) -> str:
    """The canonical text of a value in any accepted form (what the hub stores, signs and compares)."""
    return format_vpdq(parse_vpdq(value))


def vpdq_digest(canonical: str) -> str:
    """Lowercase hex SHA-256 of a canonical vpdq text: the fixed-width key the hub stores a vpdq signal under
    (its value column, deduplication, the deny list), while batches carry the text itself (ADR 0014)."""
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def is_canonical_vpdq(value: str) -> bool:
    """Whether ``value`` is exactly the canonical text of a valid vpdq value (what a signed batch carries)."""
    if not isinstance(value, str) or len(value) > MAX_VPDQ_CHARS or not CANONICAL_VPDQ.fullmatch(value):
        return False
    try:
        return normalize_vpdq(value) == value
    except InvalidHashError:
        return False


def unique_words(frames: Sequence[VpdqFrame], min_quality: int = VPDQ_MIN_QUALITY) -> U64Array:
    """The ``(n, 4)`` words of the frames compared: quality at least ``min_quality``, each hash once, in
    order of first appearance (python-threatexchange's ``quality_filter`` then ``dedupe``)."""
    seen: dict[str, None] = {}
    for f in frames:
        if f.quality >= min_quality:
            seen.setdefault(f.pdq, None)
    return pdq_hex_to_words(list(seen)) if seen else np.zeros((0, 4), dtype=np.uint64)


def match_percentages(query: U64Array, stored: U64Array, threshold: int) -> tuple[float, float]:
    """(query %, stored %) of two videos' unique frame words, by brute force: the reference the indexed
    matcher is checked against, and enough for a handful of videos."""
    if len(query) == 0 or len(stored) == 0:
        return 0.0, 0.0
    dist = np.bitwise_count(query[:, None, :] ^ stored[None, :, :]).sum(axis=2)
    near = dist <= threshold
    return percent(int(near.any(axis=1).sum()), len(query)), percent(int(near.any(axis=0).sum()), len(stored))


def percent(matched: int, total: int) -> float:
    """``matched`` of ``total`` in per cent, rounded to two decimals (0 when there is nothing to match)."""
    return round(100.0 * matched / total, 2) if total else 0.0


def check_percent(value: int) -> int:
    """``value`` if it is an integer percentage 1..100, else :class:`InvalidThresholdError` (a ValueError)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise InvalidThresholdError(f"a vPDQ match percentage is an integer 1..100, got {value!r}")
    return value
