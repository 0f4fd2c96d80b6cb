"""`POST /v1/match`: the hub-hosted reference matcher for partners that run none of their own.

Hashes in, matching signals out; media never comes to the hub (the endpoint takes hex hashes only). The
matcher is the partner kit's (`partners.matching.matcher.Matcher`; the hub never imports pdqhash or
Pillow). Each process keeps its own in-memory index of every collection's published signals:

- built once, at first use, from the signals published up to each collection's head seq;
- then, on every request, caught up from the `batches` table by seq (one small query of the heads; the
  new batches' adds and removes are applied in place), so several gunicorn workers and a separate
  scheduler process need no coordination, and a retraction stops matching as soon as it is sealed;
- a caller only gets matches from collections it may read (reader access, active partner).

Audit: a match request writes no audit entry, neither per hash nor per request. It is a read of signals
the caller may already download whole from the feed (unaudited GETs, DESIGN.md), it changes nothing, and
this is the hub's highest-volume endpoint: an entry per request would serialize every match on the audit
log's writer lock. What a partner does with a match is audited where it acts: `POST /v1/reports`.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from audit.errors import VerificationError
from audit.payloads import BatchPayload
from hub.errors import HubError, PayloadTooLargeError, ValidationError
from hub.feed import snapshots
from hub.feed.models import (
    FEED_TYPES,
    Access,
    Batch,
    Collection,
    CollectionHead,
    CollectionMember,
    Signal,
    SignalSeq,
    VpdqValue,
)
from hub.feed.signals import HEX_LENGTHS, VPDQ, parse_vpdq_value
from hub.identity.models import Partner, PartnerStatus
from partners.matching.matcher import Matcher

log = logging.getLogger(__name__)

MAX_QUERIES = 1_000
MAX_THRESHOLD = 64  # the matcher's ceiling for PDQ; a collection may store up to 256
_HEX = frozenset("0123456789abcdefABCDEF")
_QUERY_KEYS = frozenset({"type", "value", "threshold"})


class MatchIndexError(HubError):
    """A stored batch could not be read back while updating the match index."""


@dataclass(frozen=True)
class Query:
    """One validated query hash."""

    type: str
    value: str  # lowercase hex; vpdq: the canonical frames text
    threshold: int | None


def parse_queries(items: Any) -> list[Query]:
    """Validate every query or raise: 413 over 1,000, 422 naming each bad item by its index."""
    if not isinstance(items, list) or not items:
        raise ValidationError("queries must be a non-empty list", errors={"queries": ["a non-empty list"]})
    if len(items) > MAX_QUERIES:
        raise PayloadTooLargeError(f"at most {MAX_QUERIES} hashes per request, got {len(items)}")
    out: list[Query] = []
    errors: dict[str, list[str]] = {}
    for i, raw in enumerate(items):
        problems: list[str] = []
        if not isinstance(raw, dict):
            errors[str(i)] = ['an object {"type", "value", "threshold"?}']
            continue
        extra = sorted(set(raw) - _QUERY_KEYS)
        if extra:
            problems.append(f"unknown fields: {', '.join(extra)}")
        kind, value, threshold = raw.get("type"), raw.get("value"), raw.get("threshold")
        length = HEX_LENGTHS.get(kind) if isinstance(kind, str) else None
        if kind == VPDQ:
            try:
                _, value = parse_vpdq_value(value)
            except ValueError as e:
                problems.append(str(e))
        elif length is None:
            problems.append(f"type must be one of {', '.join(FEED_TYPES)}")
        elif not isinstance(value, str) or len(value) != length or not set(value) <= _HEX:
            problems.append(f"value must be {length} hex digits for {kind}")
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, int) or not 0 <= threshold <= MAX_THRESHOLD
        ):
            problems.append(f"threshold must be an integer 0..{MAX_THRESHOLD}")
        if problems:
            errors[str(i)] = problems
        elif isinstance(kind, str) and isinstance(value, str):
            out.append(Query(kind, value.lower(), threshold))
    if errors:
        raise ValidationError(f"{len(errors)} of {len(items)} queries are invalid", errors={"queries": errors})
    return out


class MatchIndex:
    """One process's index of every collection's published signals, caught up from `batches` by seq."""

    def __init__(self) -> None:
        self.matcher = Matcher()
        self.heads: dict[str, int] = {}  # collection -> the seq the index reflects
        self.added_in: dict[tuple[str, str], int] = {}  # (collection, signal id) -> batch seq of its add
        self.builds = 0
        self.batches_applied = 0
        self._built = False
        # Guards this process's own index while it is updated; queries read the matcher without it.
        self._lock = threading.Lock()

    def update(self, session: Session) -> None:
        """Build at first use, else apply the batches sealed since; refresh collection thresholds."""
        with self._lock:
            rows = session.execute(select(CollectionHead.collection_id, CollectionHead.size))
            heads = {c: int(size) for c, size in rows}
            if not self._built:
                self._build(session, heads)
            else:
                for c, size in heads.items():
                    if size > self.heads.get(c, 0):
                        self._catch_up(session, c, size)
            for c, threshold, percent in session.execute(
                select(Collection.id, Collection.pdq_threshold, Collection.vpdq_percent)
            ):
                self.matcher.set_threshold(c, min(threshold, MAX_THRESHOLD))
                self.matcher.set_vpdq_percent(c, percent)

    def _build(self, session: Session, heads: dict[str, int]) -> None:
        """Every signal published at each head: added at or before it, not removed at or before it."""
        groups: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for c, size in heads.items():
            published = and_(
                Signal.collection_id == c,
                SignalSeq.added_seq <= size,
                or_(SignalSeq.removed_seq.is_(None), SignalSeq.removed_seq > size),
            )
            query = select(Signal.id, Signal.type, Signal.value, SignalSeq.added_seq).join(
                SignalSeq, SignalSeq.signal_id == Signal.id
            )
            if snapshots.holds_videos(session, c):  # a vpdq signal's value is its frames text, as in its batch
                query = query.outerjoin(
                    VpdqValue, and_(Signal.type == VPDQ, VpdqValue.sha256 == Signal.value)
                ).with_only_columns(
                    Signal.id, Signal.type, func.coalesce(VpdqValue.frames, Signal.value), SignalSeq.added_seq
                )
            rows = session.execute(query.where(published).execution_options(yield_per=10_000))
            for sid, kind, value, seq in rows:
                groups[(c, kind)].append((sid, value))
                self.added_in[(c, sid)] = int(seq or 0)
        for (c, kind), pairs in groups.items():
            self.matcher.add(c, kind, pairs)
        self.heads = dict(heads)
        self._built = True
        self.builds += 1
        log.info("match index built: %d signals in %d collections", len(self.matcher), len(heads))

    def _catch_up(self, session: Session, collection: str, size: int) -> None:
        after = self.heads.get(collection, 0)
        rows = session.execute(
            select(Batch.seq, Batch.payload)
            .where(Batch.collection_id == collection, Batch.seq > after, Batch.seq <= size)
            .order_by(Batch.seq)
        )
        for seq, raw in rows:
            try:
                payload = BatchPayload.from_bytes(bytes(raw))
            except VerificationError as e:
                raise MatchIndexError(f"batch {collection}/{seq} cannot be read back") from e
            if payload.seq != seq or payload.collection != collection or seq != self.heads.get(collection, 0) + 1:
                raise MatchIndexError(f"batch {collection}/{seq} is not the next batch of its log")
            self.apply(collection, payload)

    def apply(self, collection: str, payload: BatchPayload) -> None:
        """One batch in place: its adds, then its removes (as the partner kit's mirror applies them)."""
        adds: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for a in payload.adds:
            if a.type in FEED_TYPES:
                adds[a.type].append((a.id, a.value))
                self.added_in[(collection, a.id)] = payload.seq
        for kind, pairs in adds.items():
            self.matcher.add(collection, kind, pairs)
        if payload.removes:
            ids = [r.id for r in payload.removes]
            self.matcher.remove(collection, ids)
            for sid in ids:
                self.added_in.pop((collection, sid), None)
        self.heads[collection] = payload.seq
        self.batches_applied += 1

    def match(self, queries: Sequence[Query], collections: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Per query, its matches in `collections` (nearest first): collection, signal, distance, seq."""
        results: list[list[dict[str, Any]]] = [[] for _ in queries]
        if not collections:
            return results
        groups: dict[tuple[str, int | None], list[int]] = defaultdict(list)
        for i, q in enumerate(queries):
            groups[(q.type, q.threshold)].append(i)
        for (kind, threshold), positions in groups.items():
            found = self.matcher.match(
                kind, [queries[i].value for i in positions], threshold=threshold, collections=collections
            )
            for i, matches in zip(positions, found, strict=True):
                results[i] = [
                    {
                        "collection": m.collection,
                        "signal": str(m.signal_id),
                        "distance": m.distance,
                        "seq": self.added_in.get((m.collection, str(m.signal_id))),
                    }
                    for m in matches
                ]
        return results


def readable_ids(session: Session, partner_id: str) -> list[str]:
    """Collections the partner may read (readers only; a suspended partner reads nothing)."""
    partner = session.get(Partner, partner_id)
    if partner is None or partner.status != PartnerStatus.ACTIVE.value:
        return []
    return list(
        session.scalars(
            select(CollectionMember.collection_id).where(
                CollectionMember.partner_id == partner_id, CollectionMember.access == Access.READER.value
            )
        )
    )
