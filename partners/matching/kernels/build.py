# mypy: ignore-errors
# (numba kernels: numba infers and checks their types when it compiles them; mypy cannot follow @intrinsic)
"""Building and merging a chunk's MIH bucket table: a counting sort into uint32 starts, their packing in
64-byte lines, and the merge that slots appended rows into an existing table."""

from __future__ import annotations

import numpy as np
from numba import njit

from partners.matching.kernels.common import (
    PER_U8,
    PER_U16,
    chunk_value,
    mapped_value,
    prefetchw_at,
    u8_at,
    u16_at,
    u32_at,
)

# Rows ahead that build_chunk prefetches the bucket counter (and, half as far ahead, the row slot) of: the
# counting sort's scatter is bound by cache misses on its 32 MiB + 40 MB arrays at 10M rows.
BUILD_AHEAD = 32


@njit(cache=True, nogil=True)
def _key(w0, w1, w2, w3, start, bits, mapped, m0, m1, m2, m3, s1, s2, s3):
    """A hash's key: bits ``start ..``, or (``mapped``) the bits the masks select. Scalars only."""
    if mapped:
        return mapped_value(w0, w1, w2, w3, m0, m1, m2, m3, s1, s2, s3)
    return chunk_value(w0, w1, w2, w3, start, bits)


@njit(cache=True, nogil=True)
def build_chunk(hashes, start, bits, masks, shifts, offs, rows, occ):
    """Fill the CSR bucket table of a chunk of ``bits`` bits: bits ``start ..`` of the hash, or, when
    ``masks`` holds four words (a key map's chunk, see :func:`mapped_keys`), the bits they select. Outputs:
    ``offs`` (2^bits + 1 bucket starts, uint32: the caller then packs them, see
    :func:`merge_starts_packed`, and reuses ``offs`` for the next chunk), ``rows`` (the row numbers, bucket
    after bucket) and ``occ`` (2^bits / 64 words, a bitmap of non-empty buckets).

    A counting sort, O(n), without argsort's int64 temporaries and without an array of keys (a row's key is
    computed where it is needed); rows in a bucket stay ascending. The caller allocates the outputs (huge
    pages, see ``memory.py``).
    """
    n = hashes.shape[0]
    nb = np.int64(1) << np.int64(bits)
    at_offs = offs.ctypes.data
    at_rows = rows.ctypes.data
    mapped = masks.shape[0] == 4
    m0 = masks[0] if mapped else np.uint64(0)
    m1 = masks[1] if mapped else np.uint64(0)
    m2 = masks[2] if mapped else np.uint64(0)
    m3 = masks[3] if mapped else np.uint64(0)
    s1 = np.uint64(shifts[1]) if mapped else np.uint64(0)
    s2 = np.uint64(shifts[2]) if mapped else np.uint64(0)
    s3 = np.uint64(shifts[3]) if mapped else np.uint64(0)
    for k in range(nb + 1):
        offs[k] = np.uint32(0)
    for r in range(n):
        a = r + BUILD_AHEAD
        if a < n:
            ka = _key(
                hashes[a, 0], hashes[a, 1], hashes[a, 2], hashes[a, 3], start, bits, mapped, m0, m1, m2, m3, s1, s2, s3
            )
            prefetchw_at(at_offs + 4 * ka)
        k = _key(
            hashes[r, 0], hashes[r, 1], hashes[r, 2], hashes[r, 3], start, bits, mapped, m0, m1, m2, m3, s1, s2, s3
        )
        offs[k] += np.uint32(1)
    for w in range(nb >> np.int64(6)):
        occ[w] = np.uint64(0)
    for k in range(nb):
        if offs[k] != np.uint32(0):
            occ[k >> 6] |= np.uint64(1) << np.uint64(k & 63)
    # offs[k] = end of bucket k; filling each bucket from its end, rows taken last to first, leaves
    # offs[k] at the bucket's start with its rows ascending, without a cursor array (32 MiB at 23 bits).
    # Each row's counter is prefetched BUILD_AHEAD rows ahead and, once it is in cache, the slot it points
    # to half as far ahead (a hint: a counter that moves in between only makes the prefetch miss), so the
    # scatter's cache misses overlap instead of stalling one after the other.
    for k in range(1, nb):
        offs[k] += offs[k - 1]
    offs[nb] = np.uint32(n)
    half = BUILD_AHEAD // 2
    for r in range(n - 1, -1, -1):
        a = r - BUILD_AHEAD
        if a >= 0:
            ka = _key(
                hashes[a, 0], hashes[a, 1], hashes[a, 2], hashes[a, 3], start, bits, mapped, m0, m1, m2, m3, s1, s2, s3
            )
            prefetchw_at(at_offs + 4 * ka)
        b = r - half
        if b >= 0:
            kb = _key(
                hashes[b, 0], hashes[b, 1], hashes[b, 2], hashes[b, 3], start, bits, mapped, m0, m1, m2, m3, s1, s2, s3
            )
            prefetchw_at(at_rows + 4 * (np.int64(offs[kb]) - 1))
        k = _key(
            hashes[r, 0], hashes[r, 1], hashes[r, 2], hashes[r, 3], start, bits, mapped, m0, m1, m2, m3, s1, s2, s3
        )
        offs[k] -= np.uint32(1)
        rows[np.int64(offs[k])] = np.uint32(r)


@njit(cache=True, nogil=True)
def chunk_keys(hashes, start, bits, out):
    """``out[r]`` = the bucket key of row ``r`` in the chunk of ``bits`` bits at bit ``start``."""
    for r in range(hashes.shape[0]):
        out[r] = chunk_value(hashes[r, 0], hashes[r, 1], hashes[r, 2], hashes[r, 3], start, bits)


@njit(cache=True, nogil=True)
def mapped_keys(hashes, masks, shifts, out):
    """``out[r]`` = the bucket key of row ``r`` in a key map's chunk: ``masks[w]`` selects the chunk's bits of
    word w, which land at key bit ``shifts[w]`` on (see ``common.mapped_value``)."""
    m0, m1, m2, m3 = masks[0], masks[1], masks[2], masks[3]
    s1, s2, s3 = np.uint64(shifts[1]), np.uint64(shifts[2]), np.uint64(shifts[3])
    for r in range(hashes.shape[0]):
        out[r] = mapped_value(hashes[r, 0], hashes[r, 1], hashes[r, 2], hashes[r, 3], m0, m1, m2, m3, s1, s2, s3)


@njit(cache=True, nogil=True)
def _start_at(addr, width, x):
    """The start of bucket ``x`` in the bucket starts at ``addr`` (see PER_U8): scalars only, so it can run in
    a hot loop without reference counting."""
    if width == 1:
        j = x // PER_U8
        line = addr + j * 64
        return np.int64(u32_at(line, 0)) + np.int64(u8_at(line + 4, x - j * PER_U8))
    if width == 2:
        j = x // PER_U16
        line = addr + j * 64
        return np.int64(u32_at(line, 0)) + np.int64(u16_at(line + 4, x - j * PER_U16))
    return np.int64(u32_at(addr, x))


@njit(cache=True, nogil=True)
def starts_at(starts, width, xs, out):
    """``out[i]`` = the start of bucket ``xs[i]`` in ``starts`` (any width)."""
    addr = starts.ctypes.data
    for i in range(xs.shape[0]):
        out[i] = _start_at(addr, width, np.int64(xs[i]))


@njit(cache=True, nogil=True)
def merge_starts_plain(old_starts, old_width, keys, out):
    """Uint32 bucket starts of a chunk with new rows in buckets ``keys`` (sorted): bucket x starts where it did
    in ``old_starts`` (of ``old_width``) plus the number of new keys below x. With no keys, the same starts
    in another width (how a save expands packed starts)."""
    old = old_starts.ctypes.data
    k = keys.shape[0]
    i = 0
    for x in range(out.shape[0]):
        while i < k and keys[i] < x:
            i += 1
        out[x] = _start_at(old, old_width, np.int64(x)) + i


@njit(cache=True, nogil=True)
def merge_starts_packed(old_starts, old_width, keys, nb, buf, per, head, shift):
    """Like :func:`merge_starts_plain`, written as packed lines: ``buf`` is (lines, 64) uint8 with ``per`` =
    PER_U8, ``head`` = 4, ``shift`` = 8, or (lines, 32) uint16 with PER_U16, 2, 16; per line the base in
    ``head`` little-endian pieces, then ``per`` + 1 starts relative to it (past the last bucket the end
    repeats). The caller checked that every line's rows fit. With no keys, the same starts packed (how a
    build packs the uint32 starts of its counting sort)."""
    old = old_starts.ctypes.data
    k = keys.shape[0]
    mask = (np.int64(1) << np.int64(shift)) - 1
    i = 0
    for j in range(buf.shape[0]):
        x0 = np.int64(j) * per
        b = np.int64(0)
        for e in range(per + 1):
            x = min(x0 + e, nb)
            while i < k and keys[i] < x:
                i += 1
            v = _start_at(old, old_width, x) + i
            if e == 0:
                b = v
                for h in range(head):
                    buf[j, h] = (b >> (np.int64(h) * shift)) & mask
            buf[j, head + e] = v - b


@njit(cache=True, nogil=True)
def merge_starts_same(old, keys, buf, per, head, shift):
    """:func:`merge_starts_packed` when the old starts are packed in the same width (``old`` has ``buf``'s
    shape and type), the usual case: each line is copied, its base moved by the new keys below the line,
    and only the lines with new keys among their buckets have entries to raise (a 10,000-hash delta
    touches 10,000 of the 142,000 lines of a chunk at 2^23 buckets)."""
    k = keys.shape[0]
    mask = (np.int64(1) << np.int64(shift)) - 1
    i = 0
    for j in range(buf.shape[0]):
        x0 = np.int64(j) * per
        while i < k and keys[i] < x0:
            i += 1
        b = np.int64(0)
        for h in range(head):
            b |= np.int64(old[j, h]) << (np.int64(h) * shift)
        b += i
        for h in range(head):
            buf[j, h] = (b >> (np.int64(h) * shift)) & mask
        for e in range(per + 1):
            buf[j, head + e] = old[j, head + e]
        t = i
        while t < k and keys[t] < x0 + per:  # a new row in bucket keys[t]: later starts move by one
            for e in range(np.int64(keys[t]) - x0 + 1, per + 1):
                buf[j, head + e] += 1
            t += 1


@njit(cache=True, nogil=True)
def merge_chunk(old_starts, old_width, old_rows, old_occ, keys, new_rows, rows, occ):
    """One chunk's rows and occupancy with rows added: ``rows``/``occ`` = the old table's plus ``new_rows``
    (ascending, all above the old rows) in buckets ``keys`` (sorted, ties in row order); the old bucket
    starts are read from ``old_starts`` (of ``old_width``), the new ones written by ``merge_starts_*``.

    Sequential copies of the old arrays with the new rows slotted in (O(buckets + rows), no sort of the
    old rows): within a bucket the new rows follow the old ones, so rows stay ascending as
    :func:`build_chunk` leaves them.
    """
    old = old_starts.ctypes.data
    k = keys.shape[0]
    src = np.int64(0)
    dst = np.int64(0)
    for i in range(k):
        end = _start_at(old, old_width, np.int64(keys[i]) + 1)
        if end > src:
            rows[dst : dst + end - src] = old_rows[src:end]
        dst += end - src
        src = end
        rows[dst] = np.uint32(new_rows[i])
        dst += 1
    rest = old_rows.shape[0] - src
    if rest > 0:
        rows[dst : dst + rest] = old_rows[src:]
    for w in range(occ.shape[0]):
        occ[w] = old_occ[w]
    for i in range(k):
        key = np.int64(keys[i])
        occ[key >> 6] |= np.uint64(1) << np.uint64(key & 63)
