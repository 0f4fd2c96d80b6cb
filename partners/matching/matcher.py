"""The facade the hub's ``POST /v1/match`` and the partner kit call: collections of signals, one query API.

One index per signal type holds every collection's signals; each entry's int64 key maps to (collection,
signal id) through a :class:`~partners.matching.signal_table.SignalTable` (numpy arrays, 25 bytes per
signal, no Python dict). A query runs once per type and filters hits by collection and by each collection's
threshold, so asking many collections costs one search, not one per collection.

Videos: a ``vpdq`` signal's unique frames (``vpdq.unique_words``) go to a second :class:`PdqIndex` whose ids
are ``key << 16 | frame``, so a frame hit names its video without a map; a query video's frames are one
batch search there, and the vPDQ rule counts, per stored video, the query frames and stored frames matched.
``video_md5`` is an exact index like ``md5``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
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
    VIDEO_MD5,
    VPDQ,
    SignalType,
    check_threshold,
    parse_type,
    pdq_hex_to_words,
    pdq_words_to_hex,
)
from partners.matching.storage import load_pdq, save_pdq
from partners.matching.vpdq import (
    DEFAULT_VPDQ_PERCENT,
    VideoMatch,
    check_percent,
    parse_vpdq,
    percent,
    unique_words,
)

FORMAT = "hashfed.matcher"
_TYPES: dict[str, SignalType] = {str(t): t for t in SignalType}  # a dict lookup per query, not an enum call
_EXACT = (SignalType.MD5, SignalType.SHA256, VIDEO_MD5)
VERSION = 2  # 2 added the video types (md5 of videos, vPDQ frames); version 1 saves still load
_FRAME_BITS = 16  # a frame's id is its video's key << 16 | its index among the video's unique frames


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
        self._exact = {t: ExactIndex(t) for t in _EXACT}
        self._frames = PdqIndex(merge_at=merge_at, background_merge=background_merge)  # vPDQ frames
        self._video_frames: dict[int, int] = {}  # a vpdq signal's key -> its number of unique frames
        self._percents: dict[str, int] = {}
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

    def set_vpdq_percent(self, collection: str, percent: int) -> None:
        """The collection's vPDQ match percentage P (from its signed descriptor), 1..100."""
        self._percents[collection] = check_percent(percent)

    def vpdq_percent(self, collection: str) -> int:
        """The collection's vPDQ match percentage P, or 80."""
        return self._percents.get(collection, DEFAULT_VPDQ_PERCENT)

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
        kind = parse_type(signal_type)
        pairs = list(items)
        values = [v for _, v in pairs]
        words = pdq_hex_to_words(values) if kind == SignalType.PDQ else None
        frames = [unique_words(parse_vpdq(v)) for v in values] if kind == VPDQ else None
        if words is None and frames is None:  # validate before changing anything
            for v in values:
                self._exact[kind].parse(v)
        form, sid, text = encode_ids([s for s, _ in pairs])
        self._add_encoded(collection, kind, form, sid, text, words, values, frames=frames)

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
        frames: list[npt.NDArray[np.uint64]] | None = None,
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
            elif frames is not None:
                self._add_frames(keys, frames)
            else:
                self._exact[kind].add(values, keys.tolist())

    def _add_frames(self, keys: npt.NDArray[np.int64], frames: list[npt.NDArray[np.uint64]]) -> None:
        counts = [len(f) for f in frames]
        ids = _frame_ids(keys, counts)
        if len(ids):
            self._frames.add(np.concatenate(frames), ids)
        self._video_frames.update(zip(keys.tolist(), counts, strict=True))

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
            if kind == SignalType.PDQ:
                self._pdq.remove(of_type)
            elif kind == VPDQ:
                self._frames.remove(_frame_ids(of_type, [self._video_frames.pop(int(k), 0) for k in of_type]))
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
        kind = _TYPES.get(signal_type) or parse_type(signal_type)
        if kind == VPDQ:  # a video's Match: distance = 100 - the smaller share of frames matched, rounded up
            return [
                [
                    Match(math.ceil(100 - min(v.query_percent, v.stored_percent)), v.collection, v.signal_id)
                    for v in found
                    if v.both_sides
                ]
                for found in self.match_vpdq(values, threshold, collections)
            ]
        wanted = None if collections is None else frozenset(collections)
        asked = None if threshold is None else check_threshold(threshold)
        search_at, limits = self._plan(asked, wanted)
        if kind == SignalType.PDQ:
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

    def match_vpdq(
        self, values: Sequence[str], threshold: int | None = None, collections: Iterable[str] | None = None
    ) -> list[list[VideoMatch]]:
        """For each ``vpdq`` value, the stored videos that reach the collection's P on at least one side:
        the share of the query's unique frames matched, or of the stored video's. ``both_sides`` says whether
        both do (a match by vPDQ's rule); a clip of a stored video reaches it on the query side only. Frames
        match within min(``threshold``, the collection's PDQ threshold). Best first."""
        wanted = None if collections is None else frozenset(collections)
        asked = None if threshold is None else check_threshold(threshold)
        queries = [unique_words(parse_vpdq(v)) for v in values]
        results: list[list[VideoMatch]] = [[] for _ in values]
        sizes = np.array([len(w) for w in queries], dtype=np.int64)
        if not sizes.sum():
            return results
        search_at, limits = self._plan(asked, wanted)
        q, fids, dist = self._frames.search_words(np.ascontiguousarray(np.concatenate(queries)), search_at)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        with self._lock:
            table = self._table
            keys = fids >> _FRAME_BITS
            colls = table.coll[keys].astype(np.int64)
            asked_c = colls < len(limits)
            ok = asked_c & (table.live_type(keys) == TYPE_CODES[VPDQ])
            ok[ok] = dist[ok] <= limits[colls[ok]]
            q, keys, frame = q[ok], keys[ok], fids[ok] & ((1 << _FRAME_BITS) - 1)
            value = np.searchsorted(starts, q, side="right") - 1
            # per (query value, stored video): distinct query frames and distinct stored frames matched
            q_pairs, q_counts = _pair_counts(value, keys, q)
            s_pairs, s_counts = _pair_counts(value, keys, frame)
            if q_pairs.shape[1] == 0:
                return results
            names = table.collections
            stored_at = {(int(a), int(b)): int(c) for a, b, c in zip(*s_pairs, s_counts, strict=True)}
            candidates = []
            for (vi, key), qc in zip(q_pairs.T.tolist(), q_counts.tolist(), strict=True):
                name = names[int(table.coll[key])]
                needed = self.vpdq_percent(name)
                q_pct = percent(qc, int(sizes[vi]))
                s_pct = percent(stored_at.get((vi, key), 0), self._video_frames.get(key, 0))
                if q_pct >= needed or s_pct >= needed:
                    candidates.append((vi, key, name, q_pct, s_pct, q_pct >= needed and s_pct >= needed))
            if not candidates:
                return results
            picked = np.array([c[1] for c in candidates], dtype=np.int64)
            zero = np.zeros(len(picked), dtype=np.int64)
            ids = table.report(np.arange(len(picked), dtype=np.int64), picked, zero, np.zeros(len(names), np.int64)).ids
        for (vi, _, name, q_pct, s_pct, both), signal_id in zip(candidates, ids, strict=True):
            results[vi].append(VideoMatch(name, signal_id, q_pct, s_pct, both))
        for found in results:
            found.sort(key=_video_order)
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
        (:meth:`ExactIndex.save`), ``video_md5/``, ``vpdq/`` (the frames, :func:`save_pdq`), the signal table
        and the frame counts of videos as ``.npy`` files and, last and atomically, ``manifest.json`` with the
        collections, thresholds, vPDQ percentages, string ids and every file's SHA-256. No pickle."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            save_pdq(self._pdq, directory / "pdq")
            save_pdq(self._frames, directory / "vpdq")
            for kind, index in self._exact.items():
                index.save(directory / str(kind))
            files: dict[str, Any] = {}
            videos = np.array(sorted(self._video_frames.items()), dtype=np.int64).reshape(-1, 2)
            for name, arr in {**self._table.arrays(), "videos": videos}.items():
                data = np.ascontiguousarray(arr)
                np.save(directory / f"{name}.npy", data, allow_pickle=False)
                files[f"{name}.npy"] = {"dtype": data.dtype.str, "shape": list(data.shape), "sha256": _digest(data)}
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "default_threshold": self.default_threshold,
                "thresholds": self._thresholds,
                "vpdq_percents": self._percents,
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
        version = manifest.get("version")
        if version not in (1, VERSION):
            raise IndexFormatError(f"matcher format version {version!r}, this code reads 1 and {VERSION}")
        try:
            matcher = cls(int(manifest["default_threshold"]), **kwargs)  # type: ignore[arg-type]
            for name, value in dict(manifest["thresholds"]).items():
                matcher.set_threshold(str(name), int(value))
            for name, value in dict(manifest.get("vpdq_percents", {})).items():
                matcher.set_vpdq_percent(str(name), int(value))
            collections = [str(c) for c in manifest["collections"]]
            text = {int(k): str(v) for k, v in dict(manifest["text_ids"]).items()}
            arrays = {}
            for name in ("coll", "kind", "sid", "order", *(("videos",) if version == VERSION else ())):
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
        if version == VERSION:
            videos = arrays["videos"]
            if videos.ndim != 2 or videos.shape[1] != 2 or (len(videos) and int(videos[:, 0].max()) >= size):
                raise IndexFormatError("videos.npy does not describe videos of the signal table")
            matcher._video_frames = {int(k): int(n) for k, n in videos.tolist()}
            matcher._frames = load_pdq(directory / "vpdq", mmap=mmap, **kwargs)
        kinds = _EXACT if version == VERSION else _EXACT[:2]
        matcher._exact.update({t: ExactIndex.load(directory / str(t)) for t in kinds})
        return matcher


_new_match = functools.partial(tuple.__new__, Match)


def _frame_ids(keys: npt.NDArray[np.int64], counts: list[int]) -> npt.NDArray[np.int64]:
    """The frame-index ids of videos with these keys and numbers of unique frames."""
    parts = [(int(k) << _FRAME_BITS) + np.arange(n, dtype=np.int64) for k, n in zip(keys, counts, strict=True)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _pair_counts(
    value: npt.NDArray[np.int64], keys: npt.NDArray[np.int64], item: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The distinct (value, key) pairs as a (2, m) array, and how many distinct ``item`` each pair has."""
    triples = np.unique(np.stack([value, keys, item]), axis=1)
    pairs, counts = np.unique(triples[:2], axis=1, return_counts=True)
    return pairs, counts


def _video_order(v: VideoMatch) -> tuple[bool, float, str, str]:
    return (not v.both_sides, -min(v.query_percent, v.stored_percent), v.collection, str(v.signal_id))


def _match_order(m: Match) -> tuple[int, str, str]:
    return (m.distance, m.collection, str(m.signal_id))


def _digest(arr: npt.NDArray[Any]) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
