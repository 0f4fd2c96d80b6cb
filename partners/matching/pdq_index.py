"""The PDQ index: every stored hash within a Hamming distance of each query, with exact recall.

Layers, smallest first:
- :class:`PdqTable`: an immutable multi-index hash (MIH) over an array of hashes (plus a tail of rows that
  merges appended), with one bucket table per chunk; it can also be scanned exhaustively (the scan wins for
  large thresholds, where MIH probes too many keys).
- :class:`PdqIndex`: the mutable index. A main table, a small side table of recent adds, tombstones for
  removes, and a merge (optionally in a background thread) that appends the side table's rows to the main
  table chunk by chunk (or, when it must, rebuilds it). Queries read an immutable snapshot of the segments,
  so they stay correct while a merge runs.

Stored entries carry an int64 id (the caller's key; the :class:`~partners.matching.matcher.Matcher` maps it to
a collection and signal id). Internally the main table's ids increase with the row, so removing by id is a
binary search and no id-to-row map is kept in memory. Rows whose ids are their row numbers (0..n-1, the
Matcher's dense keys) keep no id array at all: the kernels report the row, which is the id.
"""

from __future__ import annotations

import functools
import itertools
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from partners.matching import memory
from partners.matching.errors import DuplicateIdError, InvalidHashError, MatchingError
from partners.matching.kernels import build, common, mih, scan
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
MAX_CHUNK_BITS = 23  # 2^23 buckets per chunk (8.7 MiB of packed starts, a 1 MiB bitmap); 24 bits: 10 chunks, radius 3
DEFAULT_MERGE_AT = 4_096  # side-table size that triggers a merge into the main table
COMPACT_AT = 8  # a merge rebuilds (dropping removed rows) once more than 1/COMPACT_AT of main is removed
SIDE_BITS = 16  # side tables (recent adds) use 16 chunks of 16 bits: see Layout.for_side
SIDE_LAYOUT_MIN = 1 << 12  # below this (16 tables of 2^16 buckets for a few hashes) a side table uses Layout.for_size
SIDE_LAYOUT_MAX = 1 << 18  # above this a side table falls back to Layout.for_size
KEYMAP_MIN = 1 << 19  # a main table of at least this many hashes (11 x 23 bits) may get a key map: KeyMap.choose
KEYMAP_SAMPLE = 1 << 16  # rows (evenly spaced) whose chunk collisions decide whether a key map is kept
KEYMAP_CORRELATED = 1 << 14  # rows of that sample whose bit correlations choose the key map
KEYMAP_GAIN = 0.8  # a key map is kept only if it brings the sample's chunk collisions below this share of natural

# Cost model of one query, in nanoseconds, calibrated on the reference machine (one thread, a CPU without
# AVX-512 VPOPCNTQ; figures in docs/perf.md). A probe costs even when its bucket is empty (the occupancy
# bitmaps, 11 MiB at 23 bits, are read from L3), a non-empty one and each candidate about one cache miss more.
# The tiled scan costs per stored hash and query (vectorized XOR + popcount over three words), plus the copy
# of each tile into its word arrays, which the queries of a batch share. With these constants a batch at
# d=52 goes to MIH at 10M hashes and to the scan at 1M (tests/matching pins both).
_NS_PER_PROBE = 6.0
_NS_PER_MISS = 30.0
_NS_PER_SCANNED = 0.9
_NS_PER_TILED_ROW = 1.5
# A segment given to the scan is searched by a call of its own (output arrays, a concatenation and a sort in
# Python), where a segment searched by MIH joins the one mih_search call: without this term, the model sent a
# side table of a few hashes to the scan on every single query.
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
        empty bucket, which the occupancy bitmap answers from cache, so wide chunks (11 x 23 bits from 1M
        hashes on) beat more, narrower ones with fuller buckets."""
        bits = min(MAX_CHUNK_BITS, max(MIN_CHUNK_BITS, math.ceil(math.log2(max(n, 2))) + 3))
        return cls(bits=bits, chunks=PDQ_BITS // bits)

    @classmethod
    def for_side(cls, n: int) -> Layout:
        """The layout of a side table (recent adds, up to the merge threshold): 16 x 16 bits.

        A side table is probed by every query next to the main table, so its cost per query matters more than
        its size: at 10k-100k hashes 16 x 16 bits probe fewer buckets per query than :meth:`for_size`'s 15 x 17
        .. 12 x 20, tuned for main tables of millions. Sixteen chunks use all 256 bits and give every chunk
        radius 1 at d=31 (272 probes), and the 4 MiB of offsets are quick to build again on every add."""
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


@dataclass(frozen=True, eq=False)
class KeyMap:
    """Which bits of the hash make each chunk's key: chunk c is bits ``order[c * bits : (c + 1) * bits]``
    (key bit k = hash bit ``order[c * bits + k]``), the bits past ``chunks * bits`` are only verified.

    Hamming distance does not depend on the order of the bits, so multi-index hashing stays exact under any
    partition of the bits into chunks, as long as the queries are split the same way (the kernels do: the
    table carries its map). Real hashes have correlated bits (images share structure); chunks of correlated
    bits fill few buckets, so a query meets full ones. :meth:`choose` spreads correlated bits over the
    chunks (docs/adr/0012). A key is PEXT of each word with the chunk's mask of it (``common.pext``: the
    instruction where it is fast, else a loop over the mask's runs of bits).
    """

    order: I64Array
    layout: Layout
    masks: U64Array = field(repr=False)  # (chunks, 4): chunk c's bits in word w
    shifts: I64Array = field(repr=False)  # (chunks, 4): the key bit where word w's bits of chunk c start

    @classmethod
    def from_order(cls, order: npt.ArrayLike, layout: Layout) -> KeyMap:
        """The key map whose chunks take the bits of ``order`` (a permutation of 0..255) in turn; within a
        chunk the key holds its bits in ascending order (as PEXT packs them)."""
        perm = np.asarray(order, dtype=np.int64).copy()
        if perm.shape != (PDQ_BITS,) or sorted(perm.tolist()) != list(range(PDQ_BITS)):
            raise MatchingError("a key map's order must be a permutation of the 256 bit positions")
        masks = np.zeros((layout.chunks, 4), dtype=np.uint64)
        shifts = np.zeros((layout.chunks, 4), dtype=np.int64)
        for c in range(layout.chunks):
            span = slice(c * layout.bits, (c + 1) * layout.bits)
            chunk = perm[span] = np.sort(perm[span])
            for bit in chunk.tolist():
                masks[c, bit // 64] |= np.uint64(1) << np.uint64(bit % 64)
            shifts[c, 1:] = np.cumsum(np.bincount(chunk // 64, minlength=4))[:3]
        return cls(perm, layout, masks, shifts)

    @classmethod
    def choose(cls, hashes: U64Array, layout: Layout) -> KeyMap | None:
        """A key map for these hashes, or ``None`` where natural order does as well (uniform hashes).

        On an evenly spaced sample of ``KEYMAP_CORRELATED`` rows: the bits' pairwise correlations; the
        ``256 - chunks * bits`` bits most correlated with the others are left to verification; the others,
        most correlated first, each go to the open chunk where its summed squared correlation with the bits
        already there is least. Kept if the pairs of rows of a sample of ``KEYMAP_SAMPLE`` that share a chunk
        key fall below ``KEYMAP_GAIN`` of natural order's (the expected size of the bucket a query meets falls
        with them).
        """
        n = int(hashes.shape[0])
        if n < 2 or sys.byteorder != "little":  # the kernels read a hash's bytes in memory order
            return None
        sample = np.ascontiguousarray(hashes[:: max(1, n // KEYMAP_SAMPLE)][:KEYMAP_SAMPLE], dtype=np.uint64)
        some = sample[:: max(1, len(sample) // KEYMAP_CORRELATED)]  # enough for correlations to +-0.01
        bits = np.unpackbits(some.view(np.uint8).reshape(len(some), 32), axis=1, bitorder="little")
        x = bits.astype(np.float32)
        x -= x.mean(axis=0)
        x /= np.maximum(x.std(axis=0), np.float32(1e-6))
        corr = np.abs(x.T @ x) / np.float32(len(x))
        del x, bits
        np.fill_diagonal(corr, 0.0)
        strain = corr.sum(axis=1)
        spare = PDQ_BITS - layout.chunks * layout.bits
        by_strain = np.argsort(-strain, kind="stable")
        left_out, placed = by_strain[:spare], by_strain[spare:]
        groups: list[list[int]] = [[] for _ in range(layout.chunks)]
        cost = np.zeros((layout.chunks, PDQ_BITS), dtype=np.float64)
        sq = corr.astype(np.float64) ** 2
        for p in placed.tolist():
            c = min((c for c in range(layout.chunks) if len(groups[c]) < layout.bits), key=lambda c: cost[c, p])
            groups[c].append(p)
            cost[c] += sq[p]
        mapped = cls.from_order([p for g in groups for p in g] + left_out.tolist(), layout)
        if _collisions(sample, layout, mapped) < KEYMAP_GAIN * _collisions(sample, layout, None):
            return mapped
        return None

    def chunk_keys(self, hashes: U64Array, c: int, out: npt.NDArray[Any]) -> None:
        """``out[r]`` = chunk ``c``'s key of row ``r`` of ``hashes``."""
        build.mapped_keys(hashes, self.masks[c], self.shifts[c], out)


def _chunk_keys(hashes: U64Array, layout: Layout, keymap: KeyMap | None, c: int, out: npt.NDArray[Any]) -> None:
    if keymap is None:
        build.chunk_keys(hashes, c * layout.bits, layout.bits, out)
    else:
        keymap.chunk_keys(hashes, c, out)


def _collisions(sample: U64Array, layout: Layout, keymap: KeyMap | None) -> int:
    """Pairs of ``sample`` rows that share a key, summed over the chunks."""
    keys = np.empty(len(sample), dtype=np.int64)
    total = 0
    for c in range(layout.chunks):
        _chunk_keys(sample, layout, keymap, c, keys)
        counts = np.unique(keys, return_counts=True)[1]
        total += int((counts * (counts - 1)).sum()) // 2
    return total


@dataclass(frozen=True)
class Hits:
    """Raw matches of one search: parallel arrays sorted by query, then distance, then id."""

    query: I64Array  # index of the query in the batch
    ids: I64Array
    distances: I64Array

    def per_query(self, n_queries: int) -> list[tuple[I64Array, I64Array]]:
        """(ids, distances) for each query of the batch, in batch order."""
        if n_queries == 1:  # a single query's hits are all of them (no search over the query column)
            return [(self.ids, self.distances)]
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


def _contiguous(arr: npt.NDArray[np.generic], dtype: npt.DTypeLike) -> npt.NDArray[np.generic]:
    """``arr`` itself if C-contiguous of ``dtype`` (the kernels read it by address), else a copy."""
    if arr.dtype == dtype and arr.flags.c_contiguous:
        return arr
    return memory.copy_of(arr, dtype)


def _address(arr: npt.NDArray[np.generic]) -> int:
    return int(arr.ctypes.data)


_PACKINGS = ((1, common.PER_U8, np.uint8, 0xFF), (2, common.PER_U16, np.uint16, 0xFFFF))  # width, per line


def _lines(buckets: int, per: int) -> int:
    return -(-buckets // per)


def _starts_with(
    starts: npt.NDArray[Any], keys: I64Array, buckets: int, *, copy: bool = True
) -> npt.NDArray[Any]:
    """A chunk's bucket starts with new rows in buckets ``keys`` (sorted; none: the same starts), in the
    narrowest width whose lines hold their rows: packed lines (see ``common.PER_U8``), or plain uint32 in a
    chunk with a line of more than 65,535 rows (``starts`` itself when it is that already, there are no keys
    and ``copy`` is false: a memory-mapped saved index keeps its map)."""
    width = starts.itemsize
    for packed_width, per, kind, most in _PACKINGS:
        bounds = np.minimum(np.arange(_lines(buckets, per) + 1, dtype=np.int64) * per, buckets)
        at = np.empty(len(bounds), dtype=np.int64)
        build.starts_at(starts, width, bounds, at)
        at += np.searchsorted(keys, bounds, side="left")  # new rows in buckets below each bound
        if int(np.diff(at).max()) <= most:  # the fullest line fits this width
            buf = memory.empty((len(bounds) - 1, 64 // packed_width), kind)
            head, shift = 4 // packed_width, 8 * packed_width
            if buf.dtype == starts.dtype and buf.shape == starts.shape:  # the same packing: copy and adjust
                build.merge_starts_same(starts, keys, buf, per, head, shift)
            else:
                build.merge_starts_packed(starts, width, keys, buckets, buf, per, head, shift)
            return buf
    if width == 4 and not len(keys) and not copy:
        return starts
    out = memory.empty(buckets + 1, np.uint32)
    build.merge_starts_plain(starts, width, keys, out)
    return out


_NO_KEYS = np.zeros(0, dtype=np.int64)
_NO_MASKS = np.zeros(0, dtype=np.uint64)  # build_chunk: natural bit order
_NO_SHIFTS = np.zeros(0, dtype=np.int64)


@functools.cache
def _probe_masks(bits: int, radius: int) -> I64Array:
    """Every ``bits``-bit mask of at most ``radius`` set bits, by weight then value: the masks within a
    smaller radius are a prefix. The arrays stay alive (cached) while kernels read them by address."""
    masks = [sum(1 << b for b in combo) for k in range(radius + 1) for combo in itertools.combinations(range(bits), k)]
    by_weight = sorted(masks, key=lambda m: (m.bit_count(), m))
    return np.array(by_weight, dtype=np.int64)


def _masks_within(bits: int, radius: int) -> int:
    return sum(math.comb(bits, k) for k in range(radius + 1)) if radius >= 0 else 0


class PdqTable:
    """An immutable MIH table over hashes, searchable by MIH or by tiled scan.

    Row i is ``hashes[i]``, or ``tail[i - len(hashes)]`` for rows that merges appended (so a large base array
    is never copied to grow). Each chunk has its own bucket arrays: ``starts[c]``, where each bucket's rows
    begin in ``rows[c]`` (packed in 64-byte lines of uint8 or uint16 starts relative to a uint32 base, or
    plain uint32 in a chunk with very full lines; see ``common.PER_U8``), ``rows[c]`` and ``occ[c]``. A
    merge replaces them one chunk at a time, so it never holds two copies of the whole table.
    """

    def __init__(
        self,
        hashes: U64Array,
        layout: Layout,
        starts: Sequence[npt.NDArray[Any]],
        rows: Sequence[U32Array],
        occ: Sequence[U64Array],
        tail: U64Array | None = None,
        keymap: KeyMap | None = None,
    ) -> None:
        if keymap is not None and keymap.layout != layout:
            raise MatchingError(f"a key map for {keymap.layout} on a table of {layout}")
        if not len(starts) == len(rows) == len(occ) == layout.chunks:
            raise MatchingError(f"{len(starts)}/{len(rows)}/{len(occ)} chunk tables for {layout.chunks} chunks")
        nb = 1 << layout.bits
        shapes = {4: (nb + 1,), **{w: (_lines(nb, per), 64 // w) for w, per, _, _ in _PACKINGS}}
        for a in starts:
            if a.dtype not in (np.uint8, np.uint16, np.uint32) or a.shape != shapes[a.itemsize]:
                raise MatchingError(f"bucket starts of {a.dtype} {a.shape} for {nb} buckets")
        self.hashes: U64Array = _contiguous(hashes, np.uint64)  # type: ignore[assignment]
        self.tail: U64Array = _NO_WORDS if tail is None else _contiguous(tail, np.uint64)  # type: ignore[assignment]
        self.layout = layout
        self.keymap = keymap
        self.starts: tuple[npt.NDArray[Any], ...] = tuple(_contiguous(a, a.dtype) for a in starts)
        self.rows: tuple[U32Array, ...] = tuple(_contiguous(a, np.uint32) for a in rows)  # type: ignore[misc]
        self.occ: tuple[U64Array, ...] = tuple(_contiguous(a, np.uint64) for a in occ)  # type: ignore[misc]
        self._radii: dict[int, I64Array] = {}
        self._mih_ns: dict[int, float] = {}

    @classmethod
    def build(cls, hashes: U64Array, layout: Layout | None = None, keymap: KeyMap | None = None) -> PdqTable:
        """Build the bucket tables of ``hashes`` (kept by reference; pass a huge-page copy for speed), with
        chunk keys in natural bit order or through ``keymap``."""
        n = int(hashes.shape[0])
        lay = layout or (keymap.layout if keymap is not None else Layout.for_size(n))
        nb = 1 << lay.bits
        words: U64Array = _contiguous(hashes, np.uint64)  # type: ignore[assignment]
        offs = memory.empty(nb + 1, np.uint32)  # one chunk's uint32 bucket starts at a time, then packed
        starts, rows, occ = [], [], []
        for c in range(lay.chunks):
            rows.append(memory.empty(n, np.uint32))
            occ.append(memory.empty(nb // 64, np.uint64))
            masks, shifts = (keymap.masks[c], keymap.shifts[c]) if keymap is not None else (_NO_MASKS, _NO_SHIFTS)
            build.build_chunk(words, c * lay.bits, lay.bits, masks, shifts, offs, rows[c], occ[c])
            starts.append(_starts_with(offs, _NO_KEYS, nb))
        return cls(words, lay, starts, rows, occ, keymap=keymap)  # type: ignore[arg-type]

    @classmethod
    def from_offsets(
        cls,
        hashes: U64Array,
        layout: Layout,
        offs: Sequence[U32Array],
        rows: Sequence[U32Array],
        occ: Sequence[U64Array],
        *,
        copy: bool = True,
        keymap: KeyMap | None = None,
    ) -> PdqTable:
        """A table from plain uint32 bucket starts per chunk (what a saved index holds), its chunk keys made
        through ``keymap`` (None: natural bit order); ``copy=False`` lets a chunk that stays plain keep its
        ``offs`` array (a memory map) instead of a copy."""
        buckets = 1 << layout.bits
        starts = [_starts_with(o, _NO_KEYS, buckets, copy=copy) for o in offs]
        return cls(hashes, layout, starts, rows, occ, keymap=keymap)

    def offsets(self, c: int) -> U32Array:
        """Chunk ``c``'s bucket starts as one uint32 per bucket (2^bits + 1), as a saved index holds them."""
        starts = self.starts[c]
        if starts.itemsize == 4:
            return starts
        out: U32Array = np.empty((1 << self.layout.bits) + 1, dtype=np.uint32)
        build.merge_starts_plain(starts, starts.itemsize, _NO_KEYS, out)
        return out

    def __len__(self) -> int:
        return int(self.hashes.shape[0]) + int(self.tail.shape[0])

    def words(self, rows: int) -> U64Array:
        """The hashes of rows 0 .. ``rows`` - 1 (a view when none are in the tail)."""
        base = len(self.hashes)
        if rows <= base:
            return self.hashes[:rows]
        return np.concatenate([self.hashes, self.tail[: rows - base]])

    def radii(self, threshold: int) -> I64Array:
        """``layout.radii(threshold)``, cached: a single query must not pay for it in Python."""
        found = self._radii.get(threshold)
        if found is None:
            found = self._radii[threshold] = self.layout.radii(threshold)
        return found

    def choose_mode(self, threshold: int, n_queries: int = 1) -> Literal["mih", "scan"]:
        """MIH unless the cost model says a tiled scan of every row is cheaper (large thresholds, batches)."""
        mih_ns = self._mih_ns.get(threshold)
        if mih_ns is None:
            mih_ns = self._mih_ns[threshold] = self.layout.estimate_ns(threshold, len(self))
        scan_ns = len(self) * (_NS_PER_SCANNED + _NS_PER_TILED_ROW / max(n_queries, 1)) + _NS_PER_SCAN_CALL
        return "mih" if mih_ns <= scan_ns else "scan"

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
        seg = _Segment(self, _NO_IDS, _contiguous(dead, np.uint8), len(self), len(self))  # type: ignore[arg-type]
        if chosen == "scan":
            return _scan(queries, threshold, seg)
        return _mih(queries, threshold, seg.descriptor(threshold)[None, :])


_NO_IDS = np.zeros(0, dtype=np.int64)
_NO_WORDS = np.zeros((0, 4), dtype=np.uint64)


def _mih(queries: U64Array, threshold: int, desc: I64Array) -> tuple[I64Array, I64Array, I64Array]:
    """One ``mih_search`` call (resumed if its output overflows): hits grouped by query, each query's sorted
    by (distance, id)."""
    nq = int(queries.shape[0])
    cap = 64 + 8 * nq
    parts: list[tuple[I64Array, I64Array, I64Array]] = []
    start = 0
    while True:
        out = np.empty((3, cap), dtype=np.int64)  # query, id, distance: one allocation per call
        done, count = mih.mih_search(queries[start:] if start else queries, threshold, desc, out)
        if not start and done >= nq:  # the usual case: all in one call
            return out[0, :count], out[1, :count], out[2, :count]
        hits = out[:, :count]
        if start:
            hits[0] += start
        parts.append((hits[0], hits[1], hits[2]))
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


def _scan(queries: U64Array, threshold: int, seg: _Segment) -> tuple[I64Array, I64Array, I64Array]:
    """Tiled scan of one segment, its base then its tail (unordered hits); resumes where an output buffer
    overflowed."""
    table = seg.table
    tile = scan.SCAN_TILE
    cap = max(1024 + 8 * int(queries.shape[0]), 2 * tile)
    parts: list[tuple[I64Array, I64Array, I64Array]] = []
    for words, row0 in ((table.hashes, 0), (table.tail, len(table.hashes))):
        n = min(len(words), seg.rows - row0)
        row, qi = 0, 0
        while row < n:
            out_q, out_id, out_dist = (np.empty(cap, dtype=np.int64) for _ in range(3))
            row, qi, count = scan.scan_search(
                queries, threshold, words, row0, seg.rows, seg.dead, seg.ids, seg.dense, tile, row, qi,
                out_q, out_id, out_dist,
            )  # fmt: skip
            parts.append((out_q[:count], out_id[:count], out_dist[:count]))
            cap *= 4
    return _concat(parts)


@dataclass(frozen=True)
class _Segment:
    """A table with the ids of its rows and its tombstones (1 = removed). ``dead`` is written in place.

    Rows below ``dense`` are their own id (no array of 8 bytes per row for them: a Matcher's keys are its
    rows); row r from there on has id ``ids[r - dense]``. In a main segment ids increase with the row, so a
    remove is a binary search. ``rows`` are visible to queries; ``dead`` and ``ids`` may be longer, with room
    for the rows a merge appends (which stay hidden until the merge is done).
    """

    table: PdqTable
    ids: I64Array
    dead: U8Array
    dense: int
    rows: int

    def __len__(self) -> int:
        return self.rows

    @property
    def all_dense(self) -> bool:
        """Whether every row is its own id (no id array kept)."""
        return self.dense >= self.rows

    def id_array(self) -> I64Array:
        ids = self.ids[: max(self.rows - self.dense, 0)]
        if self.dense == 0:
            return ids
        return np.concatenate([np.arange(min(self.dense, self.rows), dtype=np.int64), ids])

    def ids_of(self, rows: I64Array) -> I64Array:
        if self.all_dense:
            return rows.astype(np.int64)
        return np.where(rows < self.dense, rows, self.ids[np.maximum(rows - self.dense, 0)])

    def max_id(self) -> int:
        """The id of the last row (the largest in a main segment), -1 if empty."""
        return int(self.ids_of(np.array([self.rows - 1]))[0]) if self.rows else -1

    def dead_count(self) -> int:
        return int(np.count_nonzero(self.dead[: self.rows]))

    def live_rows(self) -> I64Array:
        """The live rows, by id."""
        live = np.flatnonzero(self.dead[: self.rows] == 0)
        if self.all_dense:
            return live
        return live[np.argsort(self.ids_of(live), kind="stable")]

    def alive(self) -> tuple[U64Array, I64Array]:
        """Copies of the live hashes and their ids, by row."""
        keep = self.dead[: self.rows] == 0
        base = min(self.rows, len(self.table.hashes))
        words = self.table.hashes[:base][keep[:base]]
        if self.rows > base:
            words = np.concatenate([words, self.table.tail[: self.rows - base][keep[base:]]])
        return words, self.ids_of(np.flatnonzero(keep))

    def descriptor(self, threshold: int) -> I64Array:
        """This segment's row of the ``mih_search`` descriptor for ``threshold`` (see ``kernels.mih.D_*``)."""
        table, k = self.table, mih
        lay = table.layout
        radii = table.radii(threshold)
        masks = _probe_masks(lay.bits, int(radii.max()))
        desc = np.zeros(k.D_WIDTH, dtype=np.int64)
        desc[[k.D_ROWS, k.D_BASE, k.D_BITS, k.D_CHUNKS, k.D_DENSE]] = (
            self.rows, len(table.hashes), lay.bits, lay.chunks, self.dense
        )  # fmt: skip
        for at, arr in ((k.D_HASHES, table.hashes), (k.D_TAIL, table.tail), (k.D_DEAD, self.dead)):
            desc[at] = _address(arr)
        desc[k.D_IDS], desc[k.D_MASKS] = _address(self.ids), _address(masks)
        for c in range(lay.chunks):
            desc[k.D_OFFS + c], desc[k.D_OWIDTH + c] = _address(table.starts[c]), table.starts[c].itemsize
            desc[k.D_ROWTAB + c] = _address(table.rows[c])
            desc[k.D_OCC + c], desc[k.D_RADII + c] = _address(table.occ[c]), radii[c]
            desc[k.D_NMASK + c] = _masks_within(lay.bits, int(radii[c]))
        if table.keymap is not None:
            desc[k.D_MAPPED] = 1
            n4 = 4 * lay.chunks
            desc[k.D_KMASK : k.D_KMASK + n4] = table.keymap.masks.reshape(-1).view(np.int64)
            desc[k.D_KSHIFT : k.D_KSHIFT + n4] = table.keymap.shifts.reshape(-1)
        desc[k.D_PROBES] = desc[k.D_NMASK : k.D_NMASK + lay.chunks].sum()
        return desc


@dataclass(frozen=True)
class _State:
    """What a query reads: swapped as a whole, so a query never sees half a merge."""

    main: _Segment
    merging: _Segment | None = None  # the side table being folded into the main table
    side: _Segment | None = None  # adds since the last merge started
    # per (threshold, batch size, mode): the mih_search descriptor and the segments to scan; built once
    plans: dict[tuple[int, int, str], _Plan] = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def searched(self) -> list[_Segment]:
        """The non-empty segments."""
        return [s for s in (self.main, self.merging, self.side) if s is not None and len(s)]

    def plan(self, threshold: int, n_queries: int, mode: SearchMode) -> _Plan:
        key = (threshold, n_queries if n_queries < 16 else 16 + n_queries.bit_length(), mode)
        found = self.plans.get(key)
        if found is None:
            segs = self.searched
            modes = [s.table.choose_mode(threshold, n_queries) if mode == "auto" else mode for s in segs]
            by_mih = [s.descriptor(threshold) for s, m in zip(segs, modes, strict=True) if m == "mih"]
            desc = np.stack(by_mih) if by_mih else None
            found = self.plans[key] = (desc, [s for s, m in zip(segs, modes, strict=True) if m == "scan"])
        return found


_Plan = tuple[I64Array | None, list[_Segment]]


def _room(rows: int) -> int:
    """Capacity for ``rows`` rows and the appends of later merges (address space: untouched pages are free)."""
    return rows + max(rows // 4, 1 << 16)


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
    cap = n if side else _room(n)  # a main table keeps room for the rows merges append
    if ids is None:
        id_arr, dense = _NO_IDS, n
    else:
        id_arr, dense = ids if not copy else memory.empty(cap, np.int64), 0  # type: ignore[assignment]
        id_arr[:n] = ids
    if side:
        table = PdqTable.build(words, Layout.for_side(n))
    else:
        layout = Layout.for_size(n)
        table = PdqTable.build(words, layout, KeyMap.choose(words, layout) if n >= KEYMAP_MIN else None)
    return _Segment(table, id_arr, memory.zeros(cap, np.uint8), dense, n)  # type: ignore[arg-type]


def _is_increasing(ids: I64Array) -> bool:
    return ids.shape[0] < 2 or bool(np.all(ids[1:] > ids[:-1]))


class PdqIndex:
    """A mutable PDQ index with exact recall: adds and removes apply without a full rebuild.

    Thread safety: searches may run concurrently with each other and with one writer; writes are serialised
    by a lock. ``merge_at`` is the side-table size at which adds trigger a merge, in a background thread if
    ``background_merge``.
    """

    def __init__(self, *, merge_at: int = DEFAULT_MERGE_AT, background_merge: bool = True) -> None:
        self._state = _State(main=_segment(_NO_WORDS, None, sorted_ids=True))
        self._lock = threading.RLock()
        self._merge_thread: threading.Thread | None = None
        self._merge_error: BaseException | None = None
        self._removed_during_merge: list[I64Array] = []
        self.merge_at = merge_at
        self.background_merge = background_merge
        self.last_merge: tuple[str, float] | None = None  # ("append" | "rebuild", seconds) of the last merge

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
        tiny = PdqIndex.build(np.ones((4, 4), dtype=np.uint64), None, background_merge=False)
        tiny.search(probe, 31, mode="mih")
        tiny.search(probe, 31, mode="scan")
        tiny._append(np.ones((1, 4), dtype=np.uint64), np.array([4]), np.array([0]))
        natural = KeyMap.from_order(np.arange(PDQ_BITS), tiny._state.main.table.layout)
        natural.chunk_keys(probe, 0, np.empty(1, dtype=np.int64))  # an append to a table with a key map
        self.search(probe, DEFAULT_PDQ_THRESHOLD)

    # -- reads ----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of live entries."""
        st = self._state
        return sum(len(s) - s.dead_count() for s in (st.main, st.merging, st.side) if s is not None)

    def search(self, queries: npt.ArrayLike, threshold: int = DEFAULT_PDQ_THRESHOLD, mode: SearchMode = "auto") -> Hits:
        """Every live entry within ``threshold`` (0..64) of each query, with its distance: exact recall.

        The usual case (every segment searched by MIH) is one kernel call over main, merging and side tables
        whose output is already sorted; segments the cost model gives to the tiled scan (large thresholds in
        batches) are scanned separately and the hits sorted here.
        """
        return Hits(*self.search_words(as_words(queries), check_threshold(threshold), mode))

    def search_words(
        self, words: U64Array, threshold: int, mode: SearchMode = "auto"
    ) -> tuple[I64Array, I64Array, I64Array]:
        """:meth:`search` without the argument checks, for callers that parsed and checked them already (the
        Matcher): ``words`` a C-contiguous ``(n, 4)`` uint64 array, ``threshold`` an int in 0..64. Returns the
        (query, id, distance) arrays of :class:`Hits`."""
        st = self._state
        nq = int(words.shape[0])
        if nq == 0 or not st.searched:
            return _NO_IDS, _NO_IDS, _NO_IDS
        desc, scanned = st.plan(threshold, nq, mode)
        if not scanned:
            return _mih(words, threshold, desc)  # type: ignore[arg-type]
        parts = [_scan(words, threshold, seg) for seg in scanned]
        if desc is not None:
            parts.append(_mih(words, threshold, desc))
        q, ids, dist = _concat(parts)
        if len(q) > 1:
            order = np.lexsort((ids, dist, q))
            q, ids, dist = q[order], ids[order], dist[order]
        return q, ids, dist

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
        self.apply_delta(hashes, ids, _NO_IDS)

    def remove(self, ids: npt.ArrayLike) -> int:
        """Tombstone the live entries with these ids; returns how many were live. Unknown ids are ignored."""
        id_arr = _as_ids(ids)
        with self._lock:
            return self._remove_locked(id_arr)

    def apply_delta(self, add_hashes: npt.ArrayLike, add_ids: npt.ArrayLike, remove_ids: npt.ArrayLike) -> None:
        """One batch of a feed: removes first, then adds (an id both removed and added ends up added).

        The adds go to the side table; once it holds ``merge_at`` rows a merge starts, after the lock is
        released (a synchronous merge's worker takes the lock to swap)."""
        words, id_arr, gone = as_words(add_hashes), _as_ids(add_ids), _as_ids(remove_ids)
        _check_batch(words, id_arr)
        with self._lock:
            self._remove_locked(gone)
            if len(id_arr) == 0:
                return
            self._remove_locked(id_arr)
            st = self._state
            if st.side is not None:
                old_words, old_ids = st.side.alive()
                words = np.concatenate([old_words, words])
                id_arr = np.concatenate([old_ids, id_arr])
            side = _segment(words, id_arr, sorted_ids=False, side=True)
            self._state = _State(main=st.main, merging=st.merging, side=side)
            big = len(side) >= self.merge_at
            del st, side
        if big:
            self.merge(wait=not self.background_merge)

    def merge(self, wait: bool = True, *, compact: bool = False) -> None:
        """Fold the side table into the main table, then swap it in; queries keep using the old segments
        until the swap, and adds during the merge go to a fresh side table.

        Usually the side table's rows are appended to the main table (``_append``: each chunk's bucket
        table copied with the new rows slotted in, chunk by chunk, O(n) copying and no sort). A full build
        of the live entries (``_rebuild``) runs instead when asked (``compact``, which also drops removed
        rows), when the main table has no side table to take but has removed rows, when more than one row
        in eight is removed, when the table's layout should change with its size, or when an added id is
        not above every id of the main table (its rows are sorted by id). Removes during a rebuild are
        logged and applied to the new table before the swap, under the writer lock.
        """
        with self._lock:
            self._raise_merge_error()
            running = self._merge_thread
            if running is None:
                running = self._start_merge(compact)
        if running is not None and wait:
            running.join()
        if wait:
            with self._lock:
                self._raise_merge_error()

    def _start_merge(self, compact: bool) -> threading.Thread | None:
        st = self._state
        side, main = st.side, st.main
        if side is not None and side.dead_count() == len(side):  # every add removed again: nothing to fold
            self._state = _State(main=main, merging=st.merging, side=None)
            side = None
        dead = main.dead_count()
        if side is None and not (dead and (compact or dead * COMPACT_AT > len(main))):
            return None
        self._removed_during_merge = []
        worker: Callable[..., None]
        args: tuple[object, ...]
        if side is not None and not compact and self._appendable(main, side):
            rows = side.live_rows()
            words, ids = side.table.words(side.rows)[rows], side.ids_of(rows)
            main = self._with_room(main, ids)
            self._state = _State(main=main, merging=side, side=None)
            worker, args = self._append_worker, (words, ids, rows)
        else:
            self._state = _State(main=main, merging=side, side=None)
            worker, args = self._rebuild_worker, ([s.alive() for s in (main, side) if s is not None],)
        del st, side, main  # the worker must hold no reference to the tables it replaces
        thread = threading.Thread(target=worker, args=args, daemon=True)
        self._merge_thread = thread
        thread.start()
        return thread

    @staticmethod
    def _appendable(main: _Segment, side: _Segment) -> bool:
        n, k = len(main), len(side) - side.dead_count()
        if n == 0 or k == 0 or main.table.layout != Layout.for_size(n + k):
            return False
        if main.dead_count() * COMPACT_AT > n or len(main.table) != n:
            return False
        live = side.ids_of(np.flatnonzero(side.dead[: side.rows] == 0))
        return int(live.min()) > main.max_id()

    @staticmethod
    def _with_room(main: _Segment, added: I64Array) -> _Segment:
        """``main`` with tombstones (and ids, unless the added ids continue the rows) that have room for
        the ``added`` ids. Called under the writer lock: removes go to the new tombstones from then on."""
        n, k = main.rows, len(added)
        dead, ids = main.dead, main.ids
        if len(dead) < n + k:
            dead = memory.zeros(_room(n + k), np.uint8)  # type: ignore[assignment]
            dead[:n] = main.dead[:n]
        if not _continues_rows(main, added) and len(ids) < n + k - main.dense:
            ids = memory.empty(_room(n + k - main.dense), np.int64)  # type: ignore[assignment]
            ids[: n - main.dense] = main.ids[: n - main.dense]
        return _Segment(main.table, ids, dead, main.dense, n)

    def _append_worker(self, words: U64Array, ids: I64Array, src_rows: I64Array) -> None:
        started = time.perf_counter()
        try:
            self._append(words, ids, src_rows)
            self.last_merge = ("append", time.perf_counter() - started)
        except BaseException as e:  # surfaced to the next writer; queries stay exact (the merging side
            with self._lock:  # table still holds the rows main hides), and the side tables become one again
                self._merge_error = e
                st = self._state
                if st.merging is not None:
                    pieces = [s.alive() for s in (st.merging, st.side) if s is not None]
                    words_, ids_ = (np.concatenate([p[i] for p in pieces]) for i in range(2))
                    side = _segment(words_, ids_, sorted_ids=False, side=True)
                    self._state = _State(main=st.main, merging=None, side=side)
        finally:
            self._merge_done()

    def _append(self, words: U64Array, ids: I64Array, src_rows: I64Array) -> None:
        """Append ``words`` (ids ``ids``, above every id of the main table; rows ``src_rows`` of the merging
        side table) to the main table, publishing a state after each chunk (the appended rows hidden until
        the last), so a chunk's old arrays are freed as soon as no query reads them: this frame keeps no
        reference to the old table."""
        main = self._state.main
        n, k = main.rows, len(ids)
        table = main.table
        lay = table.layout
        tail = np.concatenate([table.tail[: n - len(table.hashes)], words])
        dense = main.dense
        if _continues_rows(main, ids):
            dense = n + k
        else:
            main.ids[n - dense : n + k - dense] = ids
        main.dead[n : n + k] = 0
        new_rows = np.arange(n, n + k, dtype=np.uint32)
        keys = np.empty(k, dtype=np.int64)
        starts: list[npt.NDArray[Any]] = list(table.starts)
        rows: list[npt.NDArray[Any]] = list(table.rows)
        occ: list[npt.NDArray[Any]] = list(table.occ)
        ids_buf, dead_buf = main.ids, main.dead
        del main
        nb = 1 << lay.bits
        for c in range(lay.chunks):
            _chunk_keys(words, lay, table.keymap, c, keys)
            order = np.argsort(keys, kind="stable")
            sorted_keys = keys[order]
            new_starts = _starts_with(starts[c], sorted_keys, nb)
            new_rows_c = memory.empty(n + k, np.uint32)
            new_occ = memory.empty(len(occ[c]), np.uint64)
            build.merge_chunk(
                starts[c], starts[c].itemsize, rows[c], occ[c], sorted_keys, new_rows[order], new_rows_c, new_occ
            )
            starts[c], rows[c], occ[c] = new_starts, new_rows_c, new_occ
            del new_starts, new_rows_c, new_occ
            table = PdqTable(table.hashes, lay, starts, rows, occ, tail, table.keymap)
            step = _Segment(table, ids_buf, dead_buf, min(dense, n), n)
            with self._lock:
                cur = self._state
                self._state = _State(main=step, merging=cur.merging, side=cur.side)
                del cur, step
        with self._lock:
            cur = self._state
            if cur.merging is not None:  # removes that reached the side table during the merge
                dead_buf[n : n + k] |= cur.merging.dead[src_rows]
            done = _Segment(table, ids_buf, dead_buf, dense, n + k)
            self._state = _State(main=done, merging=None, side=cur.side)

    def _rebuild_worker(self, snapshot: list[tuple[U64Array, I64Array]]) -> None:
        started = time.perf_counter()
        try:
            words = np.concatenate([p[0] for p in snapshot])
            ids = np.concatenate([p[1] for p in snapshot])
            del snapshot
            new_main = _segment(words, ids, sorted_ids=True)
            del words, ids
            with self._lock:
                for removed in self._removed_during_merge:
                    rows, hit = _live_rows(new_main, removed, sorted_ids=True)
                    new_main.dead[rows[hit]] = 1
                st = self._state
                self._state = _State(main=new_main, merging=None, side=st.side)
                self._removed_during_merge = []
            self.last_merge = ("rebuild", time.perf_counter() - started)
        except BaseException as e:  # surfaced to the next writer; a failed merge leaves the old segments
            with self._lock:
                self._merge_error = e
        finally:
            self._merge_done()

    def _merge_done(self) -> None:
        """The merge thread's last step: adds that filled a new side table while it ran start the next
        merge (in the background) instead of waiting for the next add."""
        with self._lock:
            self._merge_thread = None
            side = self._state.side
            if self.background_merge and self._merge_error is None and side is not None and len(side) >= self.merge_at:
                self._start_merge(compact=False)

    @property
    def merge_running(self) -> bool:
        """Whether a merge is running (in the background)."""
        return self._merge_thread is not None

    def wait_for_merge(self) -> None:
        """Block until a running background merge (and any merge it chained) has finished."""
        while (running := self._merge_thread) is not None:
            running.join()
        with self._lock:
            self._raise_merge_error()

    def main_segment(self) -> _Segment:
        """The main segment with every entry in it and no removed rows (after a synchronous merge and, if
        rows were removed, a rebuild): what ``storage.save`` writes."""
        self.wait_for_merge()
        self.merge(wait=True)
        st = self._state
        if st.side is not None or st.merging is not None or st.main.dead_count():
            self.merge(wait=True, compact=True)
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


def _continues_rows(main: _Segment, ids: I64Array) -> bool:
    """Whether ``ids`` are the next row numbers of a main segment whose rows are their own ids."""
    n = main.rows
    return main.all_dense and bool(np.array_equal(ids, np.arange(n, n + len(ids))))


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


def _live_rows(seg: _Segment, ids: I64Array, *, sorted_ids: bool) -> tuple[I64Array, npt.NDArray[np.bool_]]:
    """Rows of ``seg`` holding each id, and whether that row is live (a missing id gives False)."""
    n = len(seg)
    if n == 0 or len(ids) == 0:
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    if seg.all_dense:
        rows_c = np.clip(ids, 0, n - 1)
        return rows_c, (ids >= 0) & (ids < n) & (seg.dead[rows_c] == 0)
    if sorted_ids:  # ids increase with the row: rows below seg.dense are their own id, then seg.ids
        tail = seg.ids[: n - seg.dense]
        pos = np.searchsorted(tail, ids)
        pos_c = np.minimum(pos, len(tail) - 1)
        own = (ids >= 0) & (ids < seg.dense)
        rows_c = np.where(own, ids, pos_c + seg.dense).astype(np.int64)
        hit = (own | ((pos < len(tail)) & (tail[pos_c] == ids))) & (seg.dead[rows_c] == 0)
        return rows_c, hit
    # side tables are small and unsorted; an id may sit on several rows there, at most one of them live
    live = np.flatnonzero(seg.dead[:n] == 0)
    if len(live) == 0:
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    live_ids = seg.ids_of(live)
    order = np.argsort(live_ids, kind="stable")
    sorted_live = live_ids[order]
    pos = np.minimum(np.searchsorted(sorted_live, ids), len(sorted_live) - 1)
    return live[order][pos].astype(np.int64), sorted_live[pos] == ids
