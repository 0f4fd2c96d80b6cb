"""The facade the hub's ``POST /v1/match`` and the partner kit call: collections of signals, one query API.

One index per signal type holds every collection's signals; each entry's int64 key maps to (collection,
signal id). A query runs once per type and filters hits by collection and by each collection's threshold,
so asking many collections costs one search, not one per collection.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from partners.matching.exact_index import ExactIndex
from partners.matching.pdq_index import DEFAULT_MERGE_AT, PdqIndex
from partners.matching.signals import DEFAULT_PDQ_THRESHOLD, SignalType, check_threshold, pdq_hex_to_words

SignalId = int | str


@dataclass(frozen=True, order=True)
class Match:
    """One stored signal matching a query: where it lives and how far it is (0 for exact types)."""

    distance: int
    collection: str
    signal_id: SignalId


class Matcher:
    """Signals of many collections and types; per-collection PDQ thresholds (a query may only lower them)."""

    def __init__(
        self,
        default_threshold: int = DEFAULT_PDQ_THRESHOLD,
        *,
        merge_at: int = DEFAULT_MERGE_AT,
        background_merge: bool = True,
    ) -> None:
        self.default_threshold = check_threshold(default_threshold)
        self._pdq = PdqIndex(merge_at=merge_at, background_merge=background_merge)
        self._exact = {t: ExactIndex(t) for t in (SignalType.MD5, SignalType.SHA256)}
        self._thresholds: dict[str, int] = {}
        self._entries: dict[int, tuple[str, SignalId]] = {}
        self._keys: dict[tuple[str, SignalId], tuple[SignalType, int]] = {}
        self._next_key = 0
        self._lock = threading.RLock()

    def set_threshold(self, collection: str, threshold: int) -> None:
        """The PDQ threshold of a collection (from its signed descriptor), 0..64."""
        self._thresholds[collection] = check_threshold(threshold)

    def threshold(self, collection: str) -> int:
        """The collection's PDQ threshold, or the matcher's default."""
        return self._thresholds.get(collection, self.default_threshold)

    def __len__(self) -> int:
        return len(self._entries)

    def warmup(self) -> None:
        """Compile the PDQ kernels now rather than on the first query."""
        self._pdq.warmup()

    def add(self, collection: str, signal_type: str | SignalType, items: Iterable[tuple[SignalId, str]]) -> None:
        """Add (signal id, hash value) pairs to a collection; a signal id already there is replaced."""
        kind = SignalType.parse(signal_type)
        pairs = list(items)
        values = [v for _, v in pairs]
        words = pdq_hex_to_words(values) if kind is SignalType.PDQ else None
        if kind is not SignalType.PDQ:  # validate before changing anything
            for v in values:
                self._exact[kind].parse(v)
        with self._lock:
            self.remove(collection, [sid for sid, _ in pairs])
            keys = np.arange(self._next_key, self._next_key + len(pairs), dtype=np.int64)
            self._next_key += len(pairs)
            if words is not None:
                self._pdq.add(words, keys)
            else:
                self._exact[kind].add(values, keys.tolist())
            for (sid, _), key in zip(pairs, keys.tolist(), strict=True):
                self._entries[key] = (collection, sid)
                self._keys[(collection, sid)] = (kind, key)

    def remove(self, collection: str, ids: Iterable[SignalId]) -> int:
        """Remove signals of a collection by id, whatever their type; returns how many were present."""
        with self._lock:
            pdq_keys: list[int] = []
            removed = 0
            for sid in ids:
                found = self._keys.pop((collection, sid), None)
                if found is None:
                    continue
                kind, key = found
                del self._entries[key]
                removed += 1
                if kind is SignalType.PDQ:
                    pdq_keys.append(key)
                else:
                    self._exact[kind].remove([key])
            if pdq_keys:
                self._pdq.remove(np.array(pdq_keys, dtype=np.int64))
            return removed

    def match(
        self,
        signal_type: str | SignalType,
        values: Sequence[str],
        threshold: int | None = None,
        collections: Iterable[str] | None = None,
    ) -> list[list[Match]]:
        """For each value, the matching signals, nearest first. A PDQ match counts when its distance is within
        min(``threshold``, the collection's threshold); ``collections`` limits the search."""
        kind = SignalType.parse(signal_type)
        wanted = None if collections is None else set(collections)
        asked = None if threshold is None else check_threshold(threshold)
        if kind is SignalType.PDQ:
            limits = [self.threshold(c) for c in wanted] if wanted is not None else []
            if wanted is None:
                limits = [self.default_threshold, *self._thresholds.values()]
            widest = max(limits, default=self.default_threshold)
            hits = self._pdq.search(pdq_hex_to_words(values), widest if asked is None else min(asked, widest))
            per_query = hits.per_query(len(values))
            found: list[list[tuple[int, int]]] = [
                list(zip(ids.tolist(), dist.tolist(), strict=True)) for ids, dist in per_query
            ]
        else:
            found = [[(key, 0) for key in keys] for keys in self._exact[kind].search(values)]
        results: list[list[Match]] = []
        for hits_of_one in found:
            out = []
            for key, distance in hits_of_one:
                entry = self._entries.get(key)
                if entry is None:  # removed between the search and this lookup
                    continue
                collection, sid = entry
                if wanted is not None and collection not in wanted:
                    continue
                limit = self.threshold(collection)
                if asked is not None:
                    limit = min(asked, limit)
                if distance <= limit:
                    out.append(Match(distance=distance, collection=collection, signal_id=sid))
            out.sort(key=lambda m: (m.distance, m.collection, str(m.signal_id)))
            results.append(out)
        return results
