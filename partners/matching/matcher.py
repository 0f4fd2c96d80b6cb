"""The facade the hub's ``POST /v1/match`` and the partner kit call: collections of signals, one query API.

One index per signal type holds every collection's signals; each entry's int64 key maps to (collection,
signal id) through a :class:`~partners.matching.signal_table.SignalTable` (numpy arrays, 25 bytes per
signal, no Python dict). A query runs once per type and filters hits by collection and by each collection's
threshold, so asking many collections costs one search, not one per collection.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from partners.matching.errors import IndexFormatError
from partners.matching.exact_index import ExactIndex
from partners.matching.pdq_index import DEFAULT_MERGE_AT, PdqIndex, as_words
from partners.matching.signal_table import (
    CODE_TYPES,
    FORM_UUID,
    TYPE_CODES,
    SignalId,
    SignalTable,
    encode_ids,
    room,
    sort_batch,
)
from partners.matching.signals import (
    DEFAULT_PDQ_THRESHOLD,
    SignalType,
    check_threshold,
    pdq_hex_to_words,
    pdq_words_to_hex,
)
from partners.matching.storage import load_pdq, save_pdq

FORMAT = "hashfed.matcher"
_TYPES: dict[str, SignalType] = {str(t): t for t in SignalType}  # a dict lookup per query, not an enum call
VERSION = 1


class Match(NamedTuple):
    """One stored signal matching a query: where it lives and how far it is (0 for exact types).

    A named tuple (immutable, ordered by its fields, compared by value): a query with many hits builds
    them from arrays at about a quarter of a frozen dataclass's cost."""

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
        self._table = SignalTable()
        self._lock = threading.RLock()
        # per (query threshold, collections asked): (threshold to search with, limit per collection index)
        self._plans: dict[tuple[int | None, frozenset[str] | None, int], tuple[int, npt.NDArray[np.int64]]] = {}

    def set_threshold(self, collection: str, threshold: int) -> None:
        """The PDQ threshold of a collection (from its signed descriptor), 0..64."""
        self._thresholds[collection] = check_threshold(threshold)
        self._plans = {}

    def threshold(self, collection: str) -> int:
        """The collection's PDQ threshold, or the matcher's default."""
        return self._thresholds.get(collection, self.default_threshold)

    def __len__(self) -> int:
        return self._table.live

    def warmup(self) -> None:
        """Compile (or load from numba's cache) the kernels now rather than on the first query: the PDQ
        index's, and those of a match with hits (loading them from the cache would otherwise land in the first
        hit's query)."""
        self._pdq.warmup()
        tiny = Matcher(background_merge=False)
        words = np.ones((1, 4), dtype=np.uint64)
        tiny.add_pdq("warmup", np.ones((1, 2), dtype=np.uint64), words)
        tiny.add("warmup", SignalType.PDQ, [(1, pdq_words_to_hex(words)[0])])
        tiny.match(SignalType.PDQ, pdq_words_to_hex(words))

    def add(self, collection: str, signal_type: str | SignalType, items: Iterable[tuple[SignalId, str]]) -> None:
        """Add (signal id, hash value) pairs to a collection; a signal id already there is replaced."""
        kind = SignalType.parse(signal_type)
        pairs = list(items)
        values = [v for _, v in pairs]
        words = pdq_hex_to_words(values) if kind is SignalType.PDQ else None
        if kind is not SignalType.PDQ:  # validate before changing anything
            for v in values:
                self._exact[kind].parse(v)
        form, sid, text = encode_ids([s for s, _ in pairs])
        self._add_encoded(collection, kind, form, sid, text, words, values)

    def add_pdq(self, collection: str, signal_uuids: npt.ArrayLike, words: npt.ArrayLike, *, copy: bool = True) -> None:
        """Bulk add of PDQ signals whose ids are UUIDs: ``signal_uuids`` as (n, 2) uint64 (high, low) words
        (``signal_table.uuid_words``), ``words`` as (n, 4) uint64. No Python object per signal. Into an
        empty matcher this is one index build whose keys are the rows (``copy=False``: the matcher adopts
        ``words`` and ``signal_uuids``; the caller must not modify them)."""
        sid = np.ascontiguousarray(signal_uuids, dtype=np.uint64).reshape(-1, 2)
        form = np.full(len(sid), FORM_UUID, dtype=np.int8)
        self._add_encoded(collection, SignalType.PDQ, form, sid, {}, as_words(words), [], copy=copy)

    def _add_encoded(
        self,
        collection: str,
        kind: SignalType,
        form: npt.NDArray[np.int8],
        sid: npt.NDArray[np.uint64],
        text: dict[int, str],
        words: npt.NDArray[np.uint64] | None,
        values: list[str],
        copy: bool = True,
    ) -> None:
        # refuses a repeated id before anything changes; a first batch's result becomes the table's order,
        # with room to grow in place
        perm = sort_batch(form, sid, reserve=room(len(form)) - len(form) if self._table.size == 0 else 0)
        if len(form) == 0:
            return
        with self._lock:
            table = self._table
            coll = table.collection_index(collection, create=True)
            if words is not None and table.size == 0 and len(self._pdq) == 0 and not text:
                # a first load: keys 0..n-1 in batch order are the index's rows (no key or id array), the
                # sorted batch is the table's order, and the index is one build (not a side table + merge)
                table.assign_all(coll, TYPE_CODES[kind], form, sid, perm, copy=copy)
                del perm, form, sid
                pdq = self._pdq
                self._pdq = PdqIndex.build(
                    words, None, copy=copy, merge_at=pdq.merge_at, background_merge=pdq.background_merge
                )
                return
            self._remove_encoded(coll, form, sid)
            keys = table.assign(coll, TYPE_CODES[kind], form, sid, text, perm)
            if words is not None:
                self._pdq.add(words, keys)
            else:
                self._exact[kind].add(values, keys.tolist())

    def remove(self, collection: str, ids: Iterable[SignalId]) -> int:
        """Remove signals of a collection by id, whatever their type; returns how many were present."""
        form, sid, _ = encode_ids(list(ids))
        with self._lock:
            coll = self._table.collection_index(collection)
            if coll < 0 or len(form) == 0:
                return 0
            return self._remove_encoded(coll, form, sid)

    def _remove_encoded(self, coll: int, form: npt.NDArray[np.int8], sid: npt.NDArray[np.uint64]) -> int:
        table = self._table
        keys = table.find(coll, form, sid)
        keys = keys[keys >= 0]
        types = table.live_type(keys)
        keys, types = keys[types > 0], types[types > 0]
        if len(keys) == 0:
            return 0
        for code in np.unique(types).tolist():
            of_type = keys[types == code]
            kind = CODE_TYPES[int(code)]
            if kind is SignalType.PDQ:
                self._pdq.remove(of_type)
            else:
                self._exact[kind].remove(of_type.tolist())
        table.free(keys)
        return len(keys)

    def match(
        self,
        signal_type: str | SignalType,
        values: Sequence[str],
        threshold: int | None = None,
        collections: Iterable[str] | None = None,
    ) -> list[list[Match]]:
        """For each value, the matching signals, nearest first. A PDQ match counts when its distance is within
        min(``threshold``, the collection's threshold); ``collections`` limits the search.

        Hits are filtered and mapped to (collection, signal id) in one numba call over the whole batch
        (``SignalTable.report``); Python objects are made only for the matches returned. A query without hits
        costs the hex parse, one kernel call and a few dict lookups."""
        kind = _TYPES.get(signal_type) or SignalType.parse(signal_type)
        wanted = None if collections is None else frozenset(collections)
        asked = None if threshold is None else check_threshold(threshold)
        search_at, limits = self._plan(asked, wanted)
        if kind is SignalType.PDQ:
            q, keys, dist = self._pdq.search_words(pdq_hex_to_words(values), search_at)
        else:
            found = self._exact[kind].search(values)
            q = np.array([i for i, ks in enumerate(found) for _ in ks], dtype=np.int64)
            keys = np.array([k for ks in found for k in ks], dtype=np.int64)
            dist = np.zeros(len(keys), dtype=np.int64)
        if len(keys) == 0:  # most queries: no Python object beyond the empty lists
            return [[] for _ in values]
        # a key freed between the search and now is dropped, as is a collection not asked for (limit -1), one
        # created after the plan (past the limits) or a distance beyond the collection's threshold
        with self._lock:
            hits = self._table.report(q, keys, dist, limits)
        names = self._table.collections
        # Match objects made by tuple.__new__ through map and zip: no Python frame per hit
        matches = list(
            map(_new_match, zip(hits.distances, map(names.__getitem__, hits.collections), hits.ids, strict=True))
        )
        if len(values) == 1:  # a single query's hits are one list, sorted by (distance, key)
            if hits.ties:  # ties of distance are put in (collection, id) order
                matches.sort(key=_match_order)
            return [matches]
        results: list[list[Match]] = [[] for _ in values]
        for qi, match in zip(hits.queries, matches, strict=True):
            results[qi].append(match)
        if hits.ties:
            qs, ds = hits.queries, hits.distances
            for qi in {qs[i] for i in range(1, len(qs)) if qs[i] == qs[i - 1] and ds[i] == ds[i - 1]}:
                results[qi].sort(key=_match_order)
        return results

    def _plan(self, asked: int | None, wanted: frozenset[str] | None) -> tuple[int, npt.NDArray[np.int64]]:
        """The threshold to search with and each collection's effective limit (-1: not asked), cached until
        a threshold or a collection is added.

        The limits cover the collections there when the match started; an add may create more before the
        hits are mapped, and the kernel treats a collection past the limits as not asked. So the plan reads
        the collections once, and goes to the cache it was made for: a plan made while ``set_threshold``
        replaced the cache is not kept."""
        plans = self._plans
        names = self._table.collections
        count = len(names)
        key = (asked, wanted, count)
        found = plans.get(key)
        if found is None:
            names = names[:count]  # an add may append collections while this runs
            limits = np.array([self.threshold(c) for c in names], dtype=np.int64)
            if asked is not None:
                limits = np.minimum(limits, asked)
            if wanted is not None:
                limits[np.array([c not in wanted for c in names], dtype=bool)] = -1
            tops = [self.threshold(c) for c in wanted] if wanted is not None else []
            if wanted is None:
                tops = [self.default_threshold, *self._thresholds.values()]
            widest = max(tops, default=self.default_threshold)
            found = (widest if asked is None else min(asked, widest), limits)
            if len(plans) > 256:  # many distinct collection lists: keep the cache bounded
                plans.clear()
            plans[key] = found
        return found

    # -- persistence ----------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the matcher to the directory ``path``: ``pdq/`` (:func:`save_pdq`), ``md5/`` and ``sha256/``
        (:meth:`ExactIndex.save`), the signal table as ``.npy`` files and, last and atomically,
        ``manifest.json`` with the collections, thresholds, string ids and every file's SHA-256. No pickle."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            save_pdq(self._pdq, directory / "pdq")
            for kind, index in self._exact.items():
                index.save(directory / str(kind))
            files: dict[str, Any] = {}
            for name, arr in self._table.arrays().items():
                data = np.ascontiguousarray(arr)
                np.save(directory / f"{name}.npy", data, allow_pickle=False)
                files[f"{name}.npy"] = {"dtype": data.dtype.str, "shape": list(data.shape), "sha256": _digest(data)}
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "default_threshold": self.default_threshold,
                "thresholds": self._thresholds,
                "collections": self._table.collections,
                "text_ids": {str(k): v for k, v in self._table.text.items()},
                "files": files,
            }
        tmp = directory / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, directory / "manifest.json")

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False, **kwargs: int | bool) -> Matcher:
        """Read a matcher written by :meth:`save`; :class:`IndexFormatError` if anything does not check out."""
        directory = Path(path)
        try:
            manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise IndexFormatError(f"cannot read the matcher manifest in {directory}: {e}") from e
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise IndexFormatError(f"{directory} does not hold a {FORMAT}")
        if manifest.get("version") != VERSION:
            raise IndexFormatError(f"matcher format version {manifest.get('version')!r}, this code reads {VERSION}")
        try:
            matcher = cls(int(manifest["default_threshold"]), **kwargs)  # type: ignore[arg-type]
            for name, value in dict(manifest["thresholds"]).items():
                matcher.set_threshold(str(name), int(value))
            collections = [str(c) for c in manifest["collections"]]
            text = {int(k): str(v) for k, v in dict(manifest["text_ids"]).items()}
            arrays = {}
            for name in ("coll", "kind", "sid", "order"):
                meta = manifest["files"][f"{name}.npy"]
                arr = np.load(directory / f"{name}.npy", allow_pickle=False)
                if arr.dtype.str != meta["dtype"] or list(arr.shape) != list(meta["shape"]):
                    raise IndexFormatError(f"{name}.npy: dtype/shape do not match the manifest")
                if _digest(arr) != meta["sha256"]:
                    raise IndexFormatError(f"{name}.npy: SHA-256 does not match the manifest")
                arrays[name] = arr
        except (OSError, KeyError, TypeError, ValueError) as e:
            raise IndexFormatError(f"malformed matcher in {directory}: {e}") from e
        size = len(arrays["coll"])
        if not (len(arrays["kind"]) == size and arrays["sid"].shape == (size, 2) and len(arrays["order"]) == size):
            raise IndexFormatError("the signal table's arrays disagree on the number of keys")
        if size and (int(arrays["order"].min()) < 0 or int(arrays["order"].max()) >= size):
            raise IndexFormatError("order.npy points outside the signal table")
        if size and (int(arrays["coll"].min()) < 0 or int(arrays["coll"].max()) >= len(collections)):
            raise IndexFormatError("coll.npy names an unknown collection")
        matcher._table = SignalTable.from_arrays(collections, arrays, text)
        matcher._pdq = load_pdq(directory / "pdq", mmap=mmap, **kwargs)
        matcher._exact = {t: ExactIndex.load(directory / str(t)) for t in (SignalType.MD5, SignalType.SHA256)}
        return matcher


_new_match = functools.partial(tuple.__new__, Match)


def _match_order(m: Match) -> tuple[int, str, str]:
    return (m.distance, m.collection, str(m.signal_id))


def _digest(arr: npt.NDArray[Any]) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
