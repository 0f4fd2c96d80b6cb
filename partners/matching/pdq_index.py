"""The PDQ index: every stored hash within a Hamming distance of each query, with exact recall.

Layers, smallest first:
- :class:`PdqTable`: an immutable multi-index hash (MIH) over a fixed array of hashes, which can also be
  scanned exhaustively (the scan wins for large thresholds, where MIH probes too many keys).
- :class:`PdqIndex`: the mutable index. A main table, a small side table of recent adds, tombstones for
  removes, and a merge (optionally in a background thread) that folds the side table into a new main table.
  Queries read an immutable snapshot of the segments, so they stay correct while a merge runs.

Stored entries carry an int64 id (the caller's key; the :class:`~partners.matching.matcher.Matcher` maps it to
a collection and signal id). Internally the main table's rows are sorted by id, so removing by id is a
binary search and no id-to-row map is kept in memory. When a segment's ids are exactly its row numbers
(0..n-1, the Matcher's dense keys) no id array is kept at all: the kernels then report rows, which are the ids.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import numpy.typing as npt

from partners.matching import _kernels, memory
from partners.matching.errors import DuplicateIdError, InvalidHashError, MatchingError
from partners.matching.signals import (
    DEFAULT_PDQ_THRESHOLD,
    PDQ_BITS,
    I64Array,
    U64Array,
    check_threshold,
    pdq_hex_to_words,
)

U8Array = npt.NDArray[np.uint8]
U32Array = npt.NDArray[np.uint32]
SearchMode = Literal["auto", "mih", "scan"]

MIN_CHUNK_BITS = 8
MAX_CHUNK_BITS = 23  # 2^23 buckets per chunk: 32 MiB of offsets each; 24 bits would cost 11 x 64 MiB at 10M
DEFAULT_MERGE_AT = 100_000  # side-table size that triggers a merge into the main table
SIDE_BITS = 16  # side tables (recent adds) use 16 chunks of 16 bits: see Layout.for_side
SIDE_LAYOUT_MIN = 1 << 12  # below this (4 MiB of offsets for a few hashes) a side table uses Layout.for_size
SIDE_LAYOUT_MAX = 1 << 18  # above this a side table falls back to Layout.for_size

# Cost model of one query, in nanoseconds, measured on the reference machine (2-core EPYC, one thread):
# a probe of an empty bucket costs an L3 hit on the occupancy bitmap, a non-empty one and each candidate
# about one cache miss. The tiled scan costs per stored hash and query (vectorized XOR + POPCNT), plus the
# copy of each tile into its word arrays, which the queries of a batch share.
_NS_PER_PROBE = 2.0
_NS_PER_MISS = 30.0
_NS_PER_SCANNED = 0.35
_NS_PER_TILED_ROW = 1.5
# A segment given to the scan is searched by a call of its own (output arrays, a concatenation and a sort in
# Python), where a segment searched by MIH joins the one mih_search call: measured ~10 us per single query
# for a side table of a few hashes that the model (without this term) sent to the scan.
_NS_PER_SCAN_CALL = 5_000.0


@dataclass(frozen=True)
class Layout:
    """How a table splits the 256 bits: ``chunks`` chunks of ``bits`` bits (the remaining bits are only
    checked at verification, which is enough for the pigeonhole argument)."""

    bits: int
    chunks: int

    @classmethod
    def for_size(cls, n: int) -> Layout:
        """At most one hash per 8 buckets (bits = log2(n) + 3, clamped to 8..23): most probes then hit an
        empty bucket, which the occupancy bitmap answers from cache (measured: 11 x 23 bits is twice as fast
        as 12 x 20 bits at 1M hashes)."""
        bits = min(MAX_CHUNK_BITS, max(MIN_CHUNK_BITS, math.ceil(math.log2(max(n, 2))) + 3))
        return cls(bits=bits, chunks=PDQ_BITS // bits)

    @classmethod
    def for_side(cls, n: int) -> Layout:
        """The layout of a side table (recent adds, up to the merge threshold): 16 x 16 bits.

        A side table is probed by every query next to the main table, so its cost per query matters more than
        its size. Measured per query at d=31 (one kernel call per 5,000 queries, 2-core EPYC): 10k hashes
        cost 1.8 us with 16 x 16 bits against 3.0 us with :meth:`for_size`'s 15 x 17; 100k cost 8.3 us against
        ~20 us with 12 x 20. Sixteen chunks use all 256 bits and give every chunk radius 1 at d=31 (272
        probes), and the 4 MiB of offsets build in 6 ms (10k) to 16 ms (100k)."""
        if not SIDE_LAYOUT_MIN <= n <= SIDE_LAYOUT_MAX:
            return cls.for_size(n)
        return cls(bits=SIDE_BITS, chunks=PDQ_BITS // SIDE_BITS)

    def radii(self, threshold: int) -> I64Array:
        """Per-chunk probe radii r_c with sum(r_c + 1) = threshold + 1: a hash within ``threshold`` is within
        r_c of the query on at least one chunk (otherwise its distance would be >= sum(r_c + 1)). A radius
        of -1 means the chunk is not probed."""
        q, rem = divmod(threshold + 1, self.chunks)
        return np.array([q - 1 + (1 if c < rem else 0) for c in range(self.chunks)], dtype=np.int64)

    def estimate_ns(self, threshold: int, n: int) -> float:
        """Estimated cost of one MIH query against ``n`` hashes (see the cost model above)."""
        buckets = float(1 << self.bits)
        occupied = -math.expm1(-n / buckets)
        probes = 0.0
        for r in self.radii(threshold).tolist():
            probes += sum(math.comb(self.bits, k) for k in range(r + 1)) if r >= 0 else 0
        return probes * (_NS_PER_PROBE + _NS_PER_MISS * (occupied + n / buckets))


@dataclass(frozen=True)
class Hits:
    """Raw matches of one search: parallel arrays sorted by query, then distance, then id."""

    query: I64Array  # index of the query in the batch
    ids: I64Array
    distances: I64Array

    def per_query(self, n_queries: int) -> list[tuple[I64Array, I64Array]]:
        """(ids, distances) for each query of the batch, in batch order."""
        bounds = np.searchsorted(self.query, np.arange(n_queries + 1))
        return [
            (self.ids[bounds[i] : bounds[i + 1]], self.distances[bounds[i] : bounds[i + 1]]) for i in range(n_queries)
        ]


def as_words(hashes: npt.ArrayLike) -> U64Array:
    """PDQ hashes as a C-contiguous ``(n, 4)`` uint64 array; hex strings are parsed."""
    if isinstance(hashes, np.ndarray) and hashes.dtype == np.uint64:
        arr = hashes.reshape(-1, 4) if hashes.ndim == 1 else hashes
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise InvalidHashError(f"PDQ words must have shape (n, 4), got {hashes.shape}")
        return np.ascontiguousarray(arr)
    if isinstance(hashes, str):
        return pdq_hex_to_words([hashes])
    return pdq_hex_to_words(list(hashes))  # type: ignore[arg-type]


def _kernel_array(arr: npt.NDArray[np.generic], dtype: npt.DTypeLike) -> npt.NDArray[np.generic]:
    """``arr`` itself if the kernels can take it as is (C-contiguous, writable, ``dtype``), else a copy."""
    if arr.dtype == dtype and arr.flags.c_contiguous and arr.flags.writeable:
        return arr
    return memory.copy_of(arr, dtype)


class PdqTable:
    """An immutable MIH table over hashes (row i = ``hashes[i]``), searchable by MIH or by tiled scan."""

    def __init__(self, hashes: U64Array, layout: Layout, offs: U32Array, rows: U32Array, occ: U64Array) -> None:
        # The kernels take the tables of several segments as tuples, which numba needs to be of one type:
        # C-contiguous, writable (a read-only memory map is another type) and of these dtypes.
        self.hashes: U64Array = _kernel_array(hashes, np.uint64)  # type: ignore[assignment]
        self.layout = layout
        self.offs: U32Array = _kernel_array(offs, np.uint32)  # type: ignore[assignment]
        self.rows: U32Array = _kernel_array(rows, np.uint32)  # type: ignore[assignment]
        self.occ: U64Array = _kernel_array(occ, np.uint64)  # type: ignore[assignment]
        self._radii: dict[int, I64Array] = {}
        self._mih_ns: dict[int, float] = {}

    @classmethod
    def build(cls, hashes: U64Array, layout: Layout | None = None) -> PdqTable:
        """Build the bucket tables of ``hashes`` (kept by reference; pass a huge-page copy for speed)."""
        n = int(hashes.shape[0])
        lay = layout or Layout.for_size(n)
        nb = 1 << lay.bits
        offs = memory.empty(lay.chunks * (nb + 1), np.uint32)
        rows = memory.empty(lay.chunks * n, np.uint32)
        occ = memory.empty(lay.chunks * (nb // 64), np.uint64)
        _kernels.build_tables(hashes, lay.bits, offs, rows, occ)
        return cls(hashes, lay, offs, rows, occ)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return int(self.hashes.shape[0])

    def radii(self, threshold: int) -> I64Array:
        """``layout.radii(threshold)``, cached: a single query must not pay for it in Python."""
        found = self._radii.get(threshold)
        if found is None:
            found = self._radii[threshold] = self.layout.radii(threshold)
        return found

    def choose_mode(self, threshold: int, n_queries: int = 1) -> Literal["mih", "scan"]:
        """MIH unless the cost model says a tiled scan of every row is cheaper (large thresholds, batches)."""
        mih = self._mih_ns.get(threshold)
        if mih is None:
            mih = self._mih_ns[threshold] = self.layout.estimate_ns(threshold, len(self))
        scan = len(self) * (_NS_PER_SCANNED + _NS_PER_TILED_ROW / max(n_queries, 1)) + _NS_PER_SCAN_CALL
        return "mih" if mih <= scan else "scan"

    def search(
        self, queries: U64Array, threshold: int, dead: U8Array, mode: SearchMode = "auto"
    ) -> tuple[I64Array, I64Array, I64Array]:
        """(query index, row, distance) of every live row within ``threshold`` of each query, unordered."""
        nq = int(queries.shape[0])
        if len(self) == 0 or nq == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        chosen = self.choose_mode(threshold, nq) if mode == "auto" else mode
        queries = np.ascontiguousarray(queries, dtype=np.uint64)
        dead = _kernel_array(dead, np.uint8)  # type: ignore[assignment]
        seg = (self, dead, _NO_IDS)
        if chosen == "scan":
            return _scan(queries, threshold, seg)
        return _mih(queries, threshold, _pack([seg], threshold))


_NO_IDS = np.zeros(0, dtype=np.int64)  # passed as ids: the kernels then report row numbers
_EMPTY_TABLE = PdqTable(
    np.zeros((0, 4), dtype=np.uint64),
    Layout(bits=8, chunks=1),
    np.zeros(1, dtype=np.uint32),
    np.zeros(1, dtype=np.uint32),
    np.zeros(1, dtype=np.uint64),
)
_EMPTY_DEAD = np.zeros(1, dtype=np.uint8)
_KernelSegment = tuple[PdqTable, U8Array, I64Array]  # table, tombstones, ids (or _NO_IDS)


_MihArgs = tuple[object, ...]


def _pack(segments: list[_KernelSegment], threshold: int) -> _MihArgs:
    """The arguments ``mih_search`` takes after the queries and threshold, for up to three segments."""
    segs = segments + [(_EMPTY_TABLE, _EMPTY_DEAD, _NO_IDS)] * (3 - len(segments))
    tables = [t for t, _, _ in segs]
    width = max(t.layout.chunks for t in tables)
    radii = np.full((3, width), -1, dtype=np.int64)
    for i, t in enumerate(tables):
        if len(t):
            radii[i, : t.layout.chunks] = t.radii(threshold)
    bits = np.array([t.layout.bits for t in tables], dtype=np.int64)
    return (
        (tables[0].hashes, tables[1].hashes, tables[2].hashes),
        (tables[0].offs, tables[1].offs, tables[2].offs),
        (tables[0].rows, tables[1].rows, tables[2].rows),
        (tables[0].occ, tables[1].occ, tables[2].occ),
        (segs[0][1], segs[1][1], segs[2][1]),
        (segs[0][2], segs[1][2], segs[2][2]),
        bits,
        radii,
    )


def _mih(queries: U64Array, threshold: int, packed: _MihArgs) -> tuple[I64Array, I64Array, I64Array]:
    """One ``mih_search`` call (resumed if its output overflows): hits grouped by query, each query's sorted
    by (distance, id)."""
    nq = int(queries.shape[0])
    cap = 64 + 8 * nq
    parts: list[tuple[I64Array, I64Array, I64Array]] = []
    start = 0
    while True:
        out_q, out_id, out_dist = (np.empty(cap, dtype=np.int64) for _ in range(3))
        # numba's Dispatcher stub types its call as fixed-arity; the packed tuple is unpacked at run time
        done, count = _kernels.mih_search(queries[start:], threshold, *packed, out_q, out_id, out_dist)  # type: ignore[call-arg]
        if start:
            out_q[:count] += start
        parts.append((out_q[:count], out_id[:count], out_dist[:count]))
        start += int(done)
        if start >= nq:
            break
        cap *= 4
    return _concat(parts)


def _concat(parts: list[tuple[I64Array, I64Array, I64Array]]) -> tuple[I64Array, I64Array, I64Array]:
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return _NO_IDS, _NO_IDS, _NO_IDS
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


def _scan(queries: U64Array, threshold: int, seg: _KernelSegment) -> tuple[I64Array, I64Array, I64Array]:
    """Tiled scan of one segment (unordered hits); resumes where an output buffer overflowed."""
    table, dead, ids = seg
    n = len(table)
    tile = _kernels.SCAN_TILE
    cap = max(1024 + 8 * int(queries.shape[0]), 2 * tile)
    parts: list[tuple[I64Array, I64Array, I64Array]] = []
    row, qi = 0, 0
    while row < n:
        out_q, out_id, out_dist = (np.empty(cap, dtype=np.int64) for _ in range(3))
        row, qi, count = _kernels.scan_search(
            queries, threshold, table.hashes, dead, ids, tile, row, qi, out_q, out_id, out_dist
        )
        parts.append((out_q[:count], out_id[:count], out_dist[:count]))
        cap *= 4
    return _concat(parts)


@dataclass(frozen=True)
class _Segment:
    """A table with the ids of its rows and its tombstones (1 = removed). ``dead`` is written in place.

    ``ids`` is empty when the ids are the row numbers 0..n-1 (no array of 8 bytes per row then; the kernels
    report row numbers for an empty ids array). :meth:`id_array` materialises them when needed (a save)."""

    table: PdqTable
    ids: I64Array
    dead: U8Array

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", _kernel_array(self.ids, np.int64))
        object.__setattr__(self, "dead", _kernel_array(self.dead, np.uint8))
        if len(self.ids) not in (0, len(self.table)):
            raise MatchingError(f"{len(self.ids)} ids for {len(self.table)} rows")

    def __len__(self) -> int:
        return len(self.table)

    @property
    def dense(self) -> bool:
        """Whether the ids are the row numbers (no id array kept)."""
        return len(self.ids) == 0

    def id_array(self) -> I64Array:
        return np.arange(len(self.table), dtype=np.int64) if self.dense else self.ids

    def alive(self) -> tuple[U64Array, I64Array]:
        keep = self.dead == 0
        if self.dense:
            return self.table.hashes[keep], np.flatnonzero(keep).astype(np.int64)
        return self.table.hashes[keep], self.ids[keep]


@dataclass(frozen=True)
class _State:
    """What a query reads: swapped as a whole, so a query never sees half a merge."""

    main: _Segment
    merging: _Segment | None = None  # the side table being folded into a new main table
    side: _Segment | None = None  # adds since the last merge started
    # mih_search arguments per (threshold, segments searched by MIH): built once, not per query
    packed: dict[tuple[int, tuple[int, ...]], _MihArgs] = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def searched(self) -> list[_KernelSegment]:
        """The non-empty segments, as the kernels take them."""
        segs = (s for s in (self.main, self.merging, self.side) if s is not None and len(s))
        return [(s.table, s.dead, s.ids) for s in segs]

    def mih_args(self, threshold: int, which: tuple[int, ...]) -> _MihArgs:
        key = (threshold, which)
        found = self.packed.get(key)
        if found is None:
            found = self.packed[key] = _pack([self.searched[i] for i in which], threshold)
        return found


def _segment(
    hashes: U64Array, ids: I64Array | None, *, sorted_ids: bool, copy: bool = True, side: bool = False
) -> _Segment:
    """A segment over copies of ``hashes``/``ids`` in huge-page memory, rows sorted by id if asked.

    ``copy=False`` adopts the caller's arrays when they are already sorted by id: a 10M build then holds one
    copy of the hashes, not two. ``ids=None`` means 0..n-1; ids equal to 0..n-1 are not kept either.
    ``side=True`` builds a side table (:meth:`Layout.for_side`, cheaper per query at 10k-100k hashes).
    """
    n = int(hashes.shape[0])
    if ids is not None and sorted_ids and n > 1 and not bool(np.all(ids[1:] > ids[:-1])):
        order = np.argsort(ids, kind="stable")
        hashes, ids, copy = hashes[order], ids[order], False
    if ids is not None and (n == 0 or (_is_increasing(ids) and int(ids[0]) == 0 and int(ids[-1]) == n - 1)):
        ids = None  # strictly increasing from 0 to n-1: the row numbers
    words: U64Array = memory.copy_of(hashes, np.uint64) if copy else hashes  # type: ignore[assignment]
    id_copy: I64Array = _NO_IDS if ids is None else memory.copy_of(ids, np.int64) if copy else ids  # type: ignore[assignment]
    table = PdqTable.build(words, Layout.for_side(n) if side else None)
    return _Segment(table, id_copy, np.zeros(n, dtype=np.uint8))


def _is_increasing(ids: I64Array) -> bool:
    return ids.shape[0] < 2 or bool(np.all(ids[1:] > ids[:-1]))


class PdqIndex:
    """A mutable PDQ index with exact recall: adds and removes apply without a full rebuild.

    Thread safety: searches may run concurrently with each other and with one writer; writes are serialised
    by a lock. ``merge_at`` is the side-table size at which adds trigger a merge, in a background thread if
    ``background_merge``.
    """

    def __init__(self, *, merge_at: int = DEFAULT_MERGE_AT, background_merge: bool = True) -> None:
        empty_words = np.zeros((0, 4), dtype=np.uint64)
        self._state = _State(main=_segment(empty_words, np.zeros(0, dtype=np.int64), sorted_ids=True))
        self._lock = threading.RLock()
        self._merge_thread: threading.Thread | None = None
        self._merge_error: BaseException | None = None
        self._removed_during_merge: list[I64Array] = []
        self.merge_at = merge_at
        self.background_merge = background_merge

    # -- construction ---------------------------------------------------------------------------------

    @classmethod
    def build(
        cls, hashes: npt.ArrayLike, ids: npt.ArrayLike | None = None, *, copy: bool = True, **kwargs: int | bool
    ) -> PdqIndex:
        """A new index over ``hashes`` (``(n, 4)`` uint64 words or hex strings) with int64 ``ids``
        (``None``: 0..n-1, kept as row numbers without an id array).

        With ``copy=False`` the index takes ownership of C-contiguous uint64 words and int64 ids (the caller
        must not modify them), which saves a copy of the hashes at build time.
        """
        index = cls(**kwargs)  # type: ignore[arg-type]
        words = as_words(hashes)
        id_arr = None if ids is None else _as_ids(ids)
        if id_arr is not None:
            _check_batch(words, id_arr)
        index._state = _State(main=_segment(words, id_arr, sorted_ids=True, copy=copy))
        return index

    @classmethod
    def from_state(cls, main: _Segment, **kwargs: int | bool) -> PdqIndex:
        """An index whose main segment was loaded from disk (see ``storage.py``)."""
        index = cls(**kwargs)  # type: ignore[arg-type]
        index._state = _State(main=main)
        return index

    def warmup(self) -> None:
        """Compile (or load from numba's cache) every kernel, so the first real query is not the compile."""
        probe = np.zeros((1, 4), dtype=np.uint64)
        tiny = PdqTable.build(np.ones((4, 4), dtype=np.uint64))
        dead = np.zeros(4, dtype=np.uint8)
        tiny.search(probe, 31, dead, mode="mih")
        tiny.search(probe, 31, dead, mode="scan")
        self.search(probe, DEFAULT_PDQ_THRESHOLD)

    # -- reads ----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of live entries."""
        st = self._state
        segments = (s for s in (st.main, st.merging, st.side) if s is not None)
        return sum(len(s) - int(np.count_nonzero(s.dead)) for s in segments)

    def search(self, queries: npt.ArrayLike, threshold: int = DEFAULT_PDQ_THRESHOLD, mode: SearchMode = "auto") -> Hits:
        """Every live entry within ``threshold`` (0..64) of each query, with its distance: exact recall.

        The usual case (every segment searched by MIH) is one kernel call over main, merging and side tables
        whose output is already sorted; segments the cost model gives to the tiled scan (large thresholds in
        batches) are scanned separately and the hits sorted here.
        """
        limit = check_threshold(threshold)
        words = as_words(queries)
        st = self._state
        segs = st.searched
        nq = int(words.shape[0])
        if not segs or nq == 0:
            return Hits(_NO_IDS, _NO_IDS, _NO_IDS)
        modes = [t.choose_mode(limit, nq) if mode == "auto" else mode for t, _, _ in segs]
        by_mih = tuple(i for i, m in enumerate(modes) if m == "mih")
        if len(by_mih) == len(segs):
            return Hits(*_mih(words, limit, st.mih_args(limit, by_mih)))
        parts = [_scan(words, limit, seg) for seg, m in zip(segs, modes, strict=True) if m == "scan"]
        if by_mih:
            parts.append(_mih(words, limit, st.mih_args(limit, by_mih)))
        q, ids, dist = _concat(parts)
        if len(q) > 1:
            order = np.lexsort((ids, dist, q))
            q, ids, dist = q[order], ids[order], dist[order]
        return Hits(q, ids, dist)

    def contains(self, ids: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether each id is live in the index."""
        id_arr = _as_ids(ids)
        found = np.zeros(len(id_arr), dtype=bool)
        st = self._state
        for seg in (st.main, st.merging, st.side):
            if seg is not None:
                found |= _live_rows(seg, id_arr, sorted_ids=seg is st.main)[1]
        return found

    def live(self) -> tuple[U64Array, I64Array]:
        """Copies of the live hashes and their ids, sorted by id (what a save writes)."""
        st = self._state
        pieces = [s.alive() for s in (st.main, st.merging, st.side) if s is not None]
        words = np.concatenate([p[0] for p in pieces])
        ids = np.concatenate([p[1] for p in pieces])
        order = np.argsort(ids, kind="stable")
        return words[order], ids[order]

    # -- writes ---------------------------------------------------------------------------------------

    def add(self, hashes: npt.ArrayLike, ids: npt.ArrayLike) -> None:
        """Add entries; an id already live is replaced (its old hash removed). May start a merge."""
        words, id_arr = as_words(hashes), _as_ids(ids)
        _check_batch(words, id_arr)
        if len(id_arr) == 0:
            return
        with self._lock:
            self._remove_locked(id_arr)
            st = self._state
            if st.side is not None:
                old_words, old_ids = st.side.alive()
                words = np.concatenate([old_words, words])
                id_arr = np.concatenate([old_ids, id_arr])
            side = _segment(words, id_arr, sorted_ids=False, side=True)
            self._state = _State(main=st.main, merging=st.merging, side=side)
            big = len(side) >= self.merge_at
        if big:
            self.merge(wait=not self.background_merge)

    def remove(self, ids: npt.ArrayLike) -> int:
        """Tombstone the live entries with these ids; returns how many were live. Unknown ids are ignored."""
        id_arr = _as_ids(ids)
        with self._lock:
            return self._remove_locked(id_arr)

    def apply_delta(self, add_hashes: npt.ArrayLike, add_ids: npt.ArrayLike, remove_ids: npt.ArrayLike) -> None:
        """One batch of a feed: removes first, then adds (an id both removed and added ends up added)."""
        with self._lock:
            self.remove(remove_ids)
            self.add(add_hashes, add_ids)

    def merge(self, wait: bool = True) -> None:
        """Fold the side table into a new main table (a full build of the live entries), then swap it in.

        Queries keep using the old segments until the swap. Removes that arrive during the build are logged
        and applied to the new table before the swap; adds go to a fresh side table.
        """
        with self._lock:
            self._raise_merge_error()
            running = self._merge_thread
            if running is None:
                st = self._state
                if st.side is None and not _has_dead(st.main):
                    return
                frozen = _State(main=st.main, merging=st.side, side=None)
                self._state = frozen
                snapshot = [s.alive() for s in (frozen.main, frozen.merging) if s is not None]
                self._removed_during_merge = []
                running = threading.Thread(target=self._merge_worker, args=(snapshot,), daemon=True)
                self._merge_thread = running
                running.start()
        if wait:
            running.join()
            with self._lock:
                self._raise_merge_error()

    def _merge_worker(self, snapshot: list[tuple[U64Array, I64Array]]) -> None:
        try:
            words = np.concatenate([p[0] for p in snapshot])
            ids = np.concatenate([p[1] for p in snapshot])
            new_main = _segment(words, ids, sorted_ids=True)
            del words, ids, snapshot
            with self._lock:
                for removed in self._removed_during_merge:
                    rows, hit = _live_rows(new_main, removed, sorted_ids=True)
                    new_main.dead[rows[hit]] = 1
                st = self._state
                self._state = _State(main=new_main, merging=None, side=st.side)
                self._removed_during_merge = []
        except BaseException as e:  # surfaced to the next writer; a failed merge leaves the old segments
            with self._lock:
                st = self._state
                self._merge_error = e
        finally:
            with self._lock:
                self._merge_thread = None

    def wait_for_merge(self) -> None:
        """Block until a running background merge has finished."""
        running = self._merge_thread
        if running is not None:
            running.join()
        with self._lock:
            self._raise_merge_error()

    def main_segment(self) -> _Segment:
        """The main segment after a synchronous merge: what ``storage.save`` writes."""
        self.merge(wait=True)
        self.wait_for_merge()
        st = self._state
        if st.side is not None or st.merging is not None or _has_dead(st.main):
            self.merge(wait=True)
        return self._state.main

    def _remove_locked(self, ids: I64Array) -> int:
        st = self._state
        removed = 0
        for seg in (st.main, st.merging, st.side):
            if seg is None:
                continue
            rows, hit = _live_rows(seg, ids, sorted_ids=seg is st.main)
            if hit.any():
                seg.dead[rows[hit]] = 1
                removed += int(hit.sum())
        if self._merge_thread is not None:
            self._removed_during_merge.append(ids.copy())
        return removed

    def _raise_merge_error(self) -> None:
        err, self._merge_error = self._merge_error, None
        if err is not None:
            raise MatchingError("background merge of the PDQ index failed") from err


def _as_ids(ids: npt.ArrayLike) -> I64Array:
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.size and arr.dtype.kind not in "iu":
        raise MatchingError(f"PDQ index ids must be integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _check_batch(words: U64Array, ids: I64Array) -> None:
    if words.shape[0] != ids.shape[0]:
        raise MatchingError(f"{words.shape[0]} hashes but {ids.shape[0]} ids")
    if len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1])):  # sorted input (the usual case) needs no sort
        ordered = np.sort(ids)
        if bool(np.any(ordered[1:] == ordered[:-1])):
            raise DuplicateIdError("an id appears twice in one batch of adds")


def _has_dead(seg: _Segment) -> bool:
    return bool(seg.dead.any())


def _live_rows(seg: _Segment, ids: I64Array, *, sorted_ids: bool) -> tuple[I64Array, npt.NDArray[np.bool_]]:
    """Rows of ``seg`` holding each id, and whether that row is live (a missing id gives False)."""
    n = len(seg)
    if n == 0 or len(ids) == 0:
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    if seg.dense:
        rows_c = np.clip(ids, 0, n - 1)
        return rows_c, (ids >= 0) & (ids < n) & (seg.dead[rows_c] == 0)
    if sorted_ids:
        rows = np.searchsorted(seg.ids, ids).astype(np.int64)
        rows_c = np.minimum(rows, n - 1)
        hit = (rows < n) & (seg.ids[rows_c] == ids) & (seg.dead[rows_c] == 0)
        return rows_c, hit
    # side tables are small and unsorted; an id may sit on several rows there, at most one of them live
    live = np.flatnonzero(seg.dead == 0)
    order = np.argsort(seg.ids[live], kind="stable")
    sorted_live = seg.ids[live][order]
    pos = np.minimum(np.searchsorted(sorted_live, ids), max(len(sorted_live) - 1, 0))
    if len(sorted_live) == 0:
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    hit = sorted_live[pos] == ids
    return live[order][pos].astype(np.int64), hit
