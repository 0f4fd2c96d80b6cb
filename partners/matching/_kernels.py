# mypy: ignore-errors
# (numba kernels: numba infers and checks their types when it compiles them; mypy cannot follow @intrinsic)
"""Numba kernels of the PDQ index: 256-bit popcount distance, multi-index hashing tables and tiled scans.

Measured rules on the target machine, kept here because they are easy to break:
- no array arguments to helper functions called in a hot loop (numba then emits reference-count atomics per
  call); helpers take scalars only, arrays are indexed inline;
- explicit integer casts: ``uint64`` mixed with ``int64`` silently becomes ``float64``;
- every kernel is ``cache=True`` (compiled once per machine) and ``nogil=True`` (threads can share an index).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# Stored hashes per tile of the brute-force scan: 8,192 x 32 bytes = 256 KiB stays in L2 (512 KiB per core
# on the 2-core EPYC) while every query of the batch passes over it. Not chosen from the machine's L2: on a
# Xeon with 2 MiB of L2 per core, tiles of 4,096 to 65,536 rows measured the same within the noise (1M rows,
# 1,000 queries at d=52: best 0.48-0.56 ns per row and query), the loop being bound by its popcounts.
SCAN_TILE = 8192
# Each pass of an MIH query prefetches, for up to PREFETCH_WINDOW items, what the next pass reads (the
# lines, 256 KiB, stay in L2 until then); past that, a pass prefetches its own input PREFETCH_AHEAD items
# ahead (large thresholds probe ~100k keys a query, whose lines would evict each other).
PREFETCH_WINDOW = 4096
PREFETCH_AHEAD = 16

# Bucket starts (where each bucket's rows begin in ``rows``) are packed in 64-byte lines: a uint32 base, the
# start of the line's first bucket, then the starts of its buckets and the end of its last one relative to
# the base, as uint8 (59 buckets a line, when no line holds more than 255 rows: a chunk of 2^23 buckets then
# takes 8.7 MiB, where one uint32 per bucket took 32 MiB; random hashes stay below that up to about 20M rows)
# or uint16 (29 buckets a line, up to 65,535 rows). A bucket's start and end are then in one cache line, as
# they were with plain uint32 starts, so a probe still costs one miss. A chunk with a line of more rows than
# that (degenerate data: tens of thousands of hashes sharing one chunk value) keeps plain uint32 starts.
# The width (1, 2 or 4 bytes per start) is the array's item size.
PER_U8 = 59  # buckets per line with uint8 starts: 4 bytes of base + 60 starts
PER_U16 = 29  # with uint16 starts: 4 + 2 x 30

# Fields of a segment's row in the descriptor ``mih_search`` takes (int64 each; addresses are of arrays the
# caller keeps alive). Per chunk c: D_OFFS + c (address of its bucket starts), D_OWIDTH + c (their width: 1
# or 2 = packed lines, 4 = plain uint32), D_ROWTAB + c, D_OCC + c (addresses of its rows and occupancy
# bitmap), D_RADII + c (probe radius, -1 = not probed) and D_NMASK + c (how many masks of D_MASKS that
# radius uses).
MAX_CHUNKS = 32  # 256 bits in chunks of at least 8 bits
D_ROWS = 0  # rows visible to queries (a merge in progress hides the rows it appended)
D_BASE = 1  # rows in the base hash array; rows from there on are in the tail array
D_BITS = 2
D_CHUNKS = 3
D_HASHES = 4  # address of the base hashes, (n, 4) uint64
D_TAIL = 5  # address of the tail hashes
D_DEAD = 6  # address of the tombstones, one uint8 per row
D_IDS = 7  # address of the int64 ids of rows D_DENSE ..
D_DENSE = 8  # rows below this are their own id
D_MASKS = 9  # address of the probe masks (int64, by weight, then value)
D_PROBES = 10  # probes per query: sum of D_NMASK
D_OFFS = 16
D_ROWTAB = D_OFFS + MAX_CHUNKS
D_OCC = D_ROWTAB + MAX_CHUNKS
D_RADII = D_OCC + MAX_CHUNKS
D_NMASK = D_RADII + MAX_CHUNKS
D_OWIDTH = D_NMASK + MAX_CHUNKS
D_WIDTH = D_OWIDTH + MAX_CHUNKS


@intrinsic
def _popcnt(typingctx, x):
    """LLVM ``ctpop`` on a uint64: one POPCNT instruction on the host CPU."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


def _load_at(bits, signed=False):
    """An intrinsic ``f(address, i)``: the ``bits``-bit integer at ``address + i * bits / 8``, a plain load
    (no array object, so no reference counting and no bounds check: the caller's arrays are checked)."""
    result = getattr(types, f"{'int' if signed else 'uint'}{bits}")

    @intrinsic
    def load(typingctx, address, index):
        sig = result(types.int64, types.int64)

        def codegen(context, builder, signature, args):
            base = context.cast(builder, args[0], signature.args[0], types.int64)
            i = context.cast(builder, args[1], signature.args[1], types.int64)
            ptr = builder.inttoptr(base, ir.IntType(bits).as_pointer())
            return builder.load(builder.gep(ptr, [i], inbounds=True))

        return sig, codegen

    return load


_u8_at = _load_at(8)
_u16_at = _load_at(16)
_u32_at = _load_at(32)
_u64_at = _load_at(64)
_i64_at = _load_at(64, signed=True)


def _prefetch_intrinsic(write):
    """An intrinsic ``f(address)``: ``llvm.prefetch`` of the cache line at ``address`` (an int64), for a read
    or, with ``write``, for a store (the line is fetched for ownership, so the store does not wait for it)."""

    @intrinsic
    def prefetch(typingctx, address):
        sig = types.void(types.int64)

        def codegen(context, builder, signature, args):
            base = context.cast(builder, args[0], signature.args[0], types.int64)
            i8p = builder.inttoptr(base, ir.IntType(8).as_pointer())
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
            builder.call(fn, [i8p, i32(1 if write else 0), i32(3), i32(1)])  # keep in all cache levels, data
            return context.get_dummy_value()

        return sig, codegen

    return prefetch


_prefetch_at = _prefetch_intrinsic(write=False)
_prefetchw_at = _prefetch_intrinsic(write=True)

# Rows ahead that build_chunk prefetches the bucket counter (and, half as far ahead, the row slot) of: the
# counting sort's scatter is bound by cache misses on its 32 MiB + 40 MB arrays at 10M rows.
BUILD_AHEAD = 32


@njit(cache=True, nogil=True)
def _chunk(w0, w1, w2, w3, start, bits):
    """Bits ``start .. start+bits-1`` of the 256-bit hash (bit p = bit p%64 of word p//64), as int64."""
    word = start >> 6
    off = start & 63
    if word == 0:
        lo = w0
        hi = w1
    elif word == 1:
        lo = w1
        hi = w2
    elif word == 2:
        lo = w2
        hi = w3
    else:
        lo = w3
        hi = np.uint64(0)
    v = lo >> np.uint64(off)
    if off + bits > 64:
        v = v | (hi << np.uint64(64 - off))
    mask = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    return np.int64(v & mask)


@njit(cache=True, nogil=True)
def build_chunk(hashes, start, bits, offs, rows, occ):
    """Fill the CSR bucket table of the chunk of ``bits`` bits at bit ``start``: ``offs`` (2^bits + 1 bucket
    starts, uint32: the caller then packs them, see :func:`merge_starts_packed`, and reuses ``offs`` for the
    next chunk), ``rows`` (the row numbers, bucket after bucket) and ``occ`` (2^bits / 64
    words, a bitmap of non-empty buckets).

    A counting sort, O(n), so 10M hashes build in seconds without argsort's int64 temporaries; rows in a
    bucket stay ascending. The caller allocates the outputs (huge pages, see ``memory.py``).
    """
    n = hashes.shape[0]
    nb = np.int64(1) << np.int64(bits)
    at_offs = offs.ctypes.data
    at_rows = rows.ctypes.data
    for k in range(nb + 1):
        offs[k] = np.uint32(0)
    for r in range(n):
        a = r + BUILD_AHEAD
        if a < n:
            _prefetchw_at(at_offs + 4 * _chunk(hashes[a, 0], hashes[a, 1], hashes[a, 2], hashes[a, 3], start, bits))
        k = _chunk(hashes[r, 0], hashes[r, 1], hashes[r, 2], hashes[r, 3], start, bits)
        offs[k] += np.uint32(1)
    for w in range(nb >> np.int64(6)):
        occ[w] = np.uint64(0)
    for k in range(nb):
        if offs[k] != np.uint32(0):
            occ[k >> 6] |= np.uint64(1) << np.uint64(k & 63)
    # offs[k] = end of bucket k; filling each bucket from its end, rows taken last to first, leaves
    # offs[k] at the bucket's start with its rows ascending, without a cursor array (32 MiB at 23 bits).
    # Each row's counter is prefetched BUILD_AHEAD rows ahead and, once it is in cache, the slot it points
    # to half as far ahead (a hint: a counter that moves in between only makes the prefetch miss): measured
    # 0.46-0.58 s per chunk at 10M against 0.55-0.79 s without.
    for k in range(1, nb):
        offs[k] += offs[k - 1]
    offs[nb] = np.uint32(n)
    half = BUILD_AHEAD // 2
    for r in range(n - 1, -1, -1):
        a = r - BUILD_AHEAD
        if a >= 0:
            _prefetchw_at(at_offs + 4 * _chunk(hashes[a, 0], hashes[a, 1], hashes[a, 2], hashes[a, 3], start, bits))
        b = r - half
        if b >= 0:
            kb = _chunk(hashes[b, 0], hashes[b, 1], hashes[b, 2], hashes[b, 3], start, bits)
            _prefetchw_at(at_rows + 4 * (np.int64(offs[kb]) - 1))
        k = _chunk(hashes[r, 0], hashes[r, 1], hashes[r, 2], hashes[r, 3], start, bits)
        offs[k] -= np.uint32(1)
        rows[np.int64(offs[k])] = np.uint32(r)


@njit(cache=True, nogil=True)
def chunk_keys(hashes, start, bits, out):
    """``out[r]`` = the bucket key of row ``r`` in the chunk of ``bits`` bits at bit ``start``."""
    for r in range(hashes.shape[0]):
        out[r] = _chunk(hashes[r, 0], hashes[r, 1], hashes[r, 2], hashes[r, 3], start, bits)


@njit(cache=True, nogil=True)
def _start_at(addr, width, x):
    """The start of bucket ``x`` in the bucket starts at ``addr`` (see PER_U8): scalars only, so it can run in
    a hot loop without reference counting."""
    if width == 1:
        j = x // PER_U8
        line = addr + j * 64
        return np.int64(_u32_at(line, 0)) + np.int64(_u8_at(line + 4, x - j * PER_U8))
    if width == 2:
        j = x // PER_U16
        line = addr + j * 64
        return np.int64(_u32_at(line, 0)) + np.int64(_u16_at(line + 4, x - j * PER_U16))
    return np.int64(_u32_at(addr, x))


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


@njit(cache=True, nogil=True)
def _sort_query_hits(out_id, out_dist, lo, hi):
    """Sort ``out_*[lo:hi]`` (one query's hits) by distance, then id. Called once per query, not per hit."""
    m = hi - lo
    if m < 2:
        return
    if m <= 32:  # insertion sort: a query rarely has more than a few hits
        for i in range(lo + 1, hi):
            d = out_dist[i]
            v = out_id[i]
            j = i - 1
            while j >= lo and (out_dist[j] > d or (out_dist[j] == d and out_id[j] > v)):
                out_dist[j + 1] = out_dist[j]
                out_id[j + 1] = out_id[j]
                j -= 1
            out_dist[j + 1] = d
            out_id[j + 1] = v
        return
    ids = out_id[lo:hi].copy()
    dists = out_dist[lo:hi].copy()
    order = np.argsort(ids, kind="mergesort")
    counts = np.zeros(66, dtype=np.int64)  # distances are 0..64: a stable counting sort on them
    for i in range(m):
        counts[dists[i] + 1] += 1
    for k in range(1, 66):
        counts[k] += counts[k - 1]
    for i in range(m):
        o = order[i]
        d = dists[o]
        out_id[lo + counts[d]] = ids[o]
        out_dist[lo + counts[d]] = d
        counts[d] += 1


@njit(cache=True, nogil=True)
def mih_search(queries, threshold, desc, out):
    """Every live stored entry within ``threshold`` of each query, over the segments described by ``desc``.

    Row s of ``desc`` describes segment s (the ``D_*`` fields above): its visible rows, hash storage (a
    base array and a tail of rows appended by merges), tombstones, ids (rows below ``D_DENSE`` are their
    own id), and per chunk the addresses of its bucket table and how many probe masks to use. The caller
    keeps every array alive while the kernel runs. Per query the segments are searched in turn (main,
    merging, side), and each query's hits are sorted by (distance, id) here.

    Exact recall by pigeonhole: the radii satisfy sum(radii + 1) > threshold, so a stored hash within the
    threshold agrees with the query to within radii[c] on some chunk c, and the probes of chunk c are the
    query's key XOR every mask of weight <= radii[c]. A candidate is verified with the full 256-bit distance
    and reported only from the first chunk that can find it, so no deduplication memory is needed. Each
    segment runs in passes (probe keys, bucket bounds, candidate rows, verification) whose loads are
    independent, and each pass prefetches what the next one reads, so the CPU overlaps the cache misses.

    Matches go to the rows of ``out`` (query index, id, distance). Returns (queries done, matches written):
    when the matches of a query do not fit in ``out`` it stops after the previous query and the caller
    resumes from there with more room.
    """
    out_q = out[0]
    out_id = out[1]
    out_dist = out[2]
    nseg = desc.shape[0]
    cap = out.shape[1]
    cnt = 0
    maxp = 1
    for s in range(nseg):
        maxp = max(maxp, desc[s, D_PROBES])
    pr = np.empty(maxp, dtype=np.int64)  # address of the line with each non-empty probe's bucket start
    pe = np.empty(maxp, dtype=np.int64)  # the start's place in that line
    pc = np.empty(maxp, dtype=np.int64)  # its chunk
    plo = np.empty(maxp, dtype=np.int64)
    phi = np.empty(maxp, dtype=np.int64)
    ccap = 4096
    crow = np.empty(ccap, dtype=np.int64)
    cchk = np.empty(ccap, dtype=np.int64)
    for qi in range(queries.shape[0]):
        q0 = queries[qi, 0]
        q1 = queries[qi, 1]
        q2 = queries[qi, 2]
        q3 = queries[qi, 3]
        qstart = cnt
        for s in range(nseg):
            limit = desc[s, D_ROWS]
            if limit == 0:
                continue
            bits = desc[s, D_BITS]
            masks = desc[s, D_MASKS]
            npr = 0
            for c in range(desc[s, D_CHUNKS]):
                nm = desc[s, D_NMASK + c]
                key = _chunk(q0, q1, q2, q3, np.int64(c) * bits, bits)
                occ = desc[s, D_OCC + c]
                offs = desc[s, D_OFFS + c]
                width = desc[s, D_OWIDTH + c]
                for j in range(nm):
                    kk = key ^ _i64_at(masks, j)
                    if (_u64_at(occ, kk >> 6) >> np.uint64(kk & 63)) & np.uint64(1):
                        # the line holding the bucket's start and end, and the start's place in it
                        if width == 1:
                            jl = kk // PER_U8
                            at = offs + jl * 64
                            e = kk - jl * PER_U8
                        elif width == 2:
                            jl = kk // PER_U16
                            at = offs + jl * 64
                            e = kk - jl * PER_U16
                        else:
                            at = offs + kk * 4
                            e = np.int64(0)
                        if npr < PREFETCH_WINDOW:
                            _prefetch_at(at)
                        pr[npr] = at
                        pe[npr] = e
                        pc[npr] = c
                        npr += 1
            total = 0
            for i in range(npr):
                ahead = i + PREFETCH_AHEAD
                if ahead >= PREFETCH_WINDOW and ahead < npr:
                    _prefetch_at(pr[ahead])
                c = pc[i]
                at = pr[i]
                e = pe[i]
                width = desc[s, D_OWIDTH + c]
                if width == 1:
                    lo = np.int64(_u32_at(at, 0)) + np.int64(_u8_at(at + 4, e))
                    hi = np.int64(_u32_at(at, 0)) + np.int64(_u8_at(at + 4, e + 1))
                elif width == 2:
                    lo = np.int64(_u32_at(at, 0)) + np.int64(_u16_at(at + 4, e))
                    hi = np.int64(_u32_at(at, 0)) + np.int64(_u16_at(at + 4, e + 1))
                else:
                    lo = np.int64(_u32_at(at, 0))
                    hi = np.int64(_u32_at(at, 1))
                if i < PREFETCH_WINDOW:
                    _prefetch_at(desc[s, D_ROWTAB + c] + lo * 4)
                plo[i] = lo
                phi[i] = hi
                total += hi - lo
            if total > ccap:
                ccap = total * 2
                crow = np.empty(ccap, dtype=np.int64)
                cchk = np.empty(ccap, dtype=np.int64)
            nbase = desc[s, D_BASE]
            hbase = desc[s, D_HASHES]
            htail = desc[s, D_TAIL] - nbase * 32  # so that row r of the tail is at htail + 32 r
            nc = 0
            for i in range(npr):
                ahead = i + PREFETCH_AHEAD
                if ahead >= PREFETCH_WINDOW and ahead < npr:
                    _prefetch_at(desc[s, D_ROWTAB + pc[ahead]] + plo[ahead] * 4)
                rows = desc[s, D_ROWTAB + pc[i]]
                for t in range(plo[i], phi[i]):
                    row = np.int64(_u32_at(rows, t))
                    if row < limit:  # rows a merge in progress appended are still the side table's
                        if nc < PREFETCH_WINDOW:
                            _prefetch_at((hbase if row < nbase else htail) + row * 32)
                        crow[nc] = row
                        cchk[nc] = pc[i]
                        nc += 1
            dead = desc[s, D_DEAD]
            for i in range(nc):
                ahead = i + PREFETCH_AHEAD
                if ahead >= PREFETCH_WINDOW and ahead < nc:
                    _prefetch_at((hbase if crow[ahead] < nbase else htail) + crow[ahead] * 32)
                row = crow[i]
                at = (hbase if row < nbase else htail) + row * 32
                h0 = _u64_at(at, 0)
                h1 = _u64_at(at, 1)
                h2 = _u64_at(at, 2)
                h3 = _u64_at(at, 3)
                d = np.int64(_popcnt(h0 ^ q0) + _popcnt(h1 ^ q1) + _popcnt(h2 ^ q2) + _popcnt(h3 ^ q3))
                if d <= threshold and _u8_at(dead, row) == 0:
                    c = cchk[i]
                    first = True
                    for c2 in range(c):
                        rad = desc[s, D_RADII + c2]
                        if rad >= 0:
                            s2 = np.int64(c2) * bits
                            x = _chunk(h0, h1, h2, h3, s2, bits)
                            y = _chunk(q0, q1, q2, q3, s2, bits)
                            if np.int64(_popcnt(np.uint64(x ^ y))) <= rad:
                                first = False
                                break
                    if first:
                        if cnt < cap:
                            dense = desc[s, D_DENSE]
                            out_q[cnt] = qi
                            out_id[cnt] = row if row < dense else _i64_at(desc[s, D_IDS], row - dense)
                            out_dist[cnt] = d
                        cnt += 1
        if cnt > cap:  # this query did not fit: report the queries done before it
            return qi, qstart
        _sort_query_hits(out_id, out_dist, qstart, cnt)
    return queries.shape[0], cnt


@njit(cache=True, nogil=True)
def scan_search(
    queries, threshold, hashes, row0, limit, dead, ids, dense, tile, row_start, q_start, out_q, out_id, out_dist
):
    """Every live stored row within ``threshold`` of each query, by a tiled exhaustive scan (unordered).

    ``hashes`` holds rows ``row0 ..`` of a segment (its base or its tail); rows from ``limit`` on are not
    visible, ``dead`` holds the segment's tombstones and a row below ``dense`` is its own id, else its id
    is ``ids[row - dense]``.

    The stored hashes are copied tile by tile into four word arrays (structure of arrays) that stay in L2
    while every query of the batch passes over them. The inner loop over a tile has no branch and starts at
    0, so LLVM vectorizes it (measured: splitting it into blocks with a branch each, or a ``range(b0, b1)``
    loop, stopped the vectorization, 5x slower). Without AVX-512 VPOPCNTQ (AVX2 here), LLVM's vector popcount
    is a nibble lookup (PSHUFB) whose cost is per byte, so the loop reads only three of the four words: the
    distance over words 0-2 (at most 192, a byte per row) is a lower bound of the distance, and a random
    row's is within 64 with probability ~2e-6. Only a (tile, query) with a row within the threshold on those
    words reads its distance bytes again and adds word 3 for those rows. Measured on the 2-core EPYC (AVX2):
    0.85-0.9 ns per row and query against 1.05-1.25 ns for all four words; a first pass over two words
    (half the bytes) lets ~2% of the rows through at d = 52, and collecting those cost more than it saved.

    Resumable: starts at tile ``row_start`` (a multiple of ``tile``), query ``q_start`` in it, and returns
    (row_start, q_start, count) of the first (tile, query) pair whose hits did not fit in ``out_*``
    (count = hits written before it), or (n, 0, count) when done.
    """
    n = min(hashes.shape[0], max(limit - row0, 0))
    nq = queries.shape[0]
    cap = out_q.shape[0]
    thr = np.uint64(threshold)
    w0 = np.empty(tile, dtype=np.uint64)
    w1 = np.empty(tile, dtype=np.uint64)
    w2 = np.empty(tile, dtype=np.uint64)
    w3 = np.empty(tile, dtype=np.uint64)
    dist = np.empty(tile, dtype=np.uint8)
    cnt = 0
    qfirst = q_start
    for t0 in range(row_start, n, tile):
        m = min(n, t0 + tile) - t0
        for r in range(m):
            w0[r] = hashes[t0 + r, 0]
            w1[r] = hashes[t0 + r, 1]
            w2[r] = hashes[t0 + r, 2]
            w3[r] = hashes[t0 + r, 3]
        for qi in range(qfirst, nq):
            q0 = queries[qi, 0]
            q1 = queries[qi, 1]
            q2 = queries[qi, 2]
            q3 = queries[qi, 3]
            before = cnt
            # branch-free and vectorized: distances over words 0-2 (<= 192: no wrap) into a byte per row, and
            # how many are within the threshold
            hit = np.uint64(0)
            for r in range(m):
                d = _popcnt(w0[r] ^ q0) + _popcnt(w1[r] ^ q1) + _popcnt(w2[r] ^ q2)
                dist[r] = np.uint8(d)
                hit += np.uint64(d <= thr)
            if hit != np.uint64(0):
                for r in range(m):
                    if np.uint64(dist[r]) <= thr:
                        d = np.uint64(dist[r]) + _popcnt(w3[r] ^ q3)
                        row = np.int64(row0) + np.int64(t0) + np.int64(r)
                        if d <= thr and dead[row] == 0:
                            if cnt < cap:
                                out_q[cnt] = qi
                                out_id[cnt] = row if row < dense else ids[row - dense]
                                out_dist[cnt] = np.int64(d)
                            cnt += 1
            if cnt > cap:
                return t0, qi, before
        qfirst = 0
    return n, 0, cnt


@njit(cache=True, nogil=True)
def pairwise_distance(a, b):
    """Row-wise Hamming distance between two ``(n, 4)`` uint64 arrays."""
    n = a.shape[0]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        d01 = _popcnt(a[i, 0] ^ b[i, 0]) + _popcnt(a[i, 1] ^ b[i, 1])
        out[i] = np.int64(d01 + _popcnt(a[i, 2] ^ b[i, 2]) + _popcnt(a[i, 3] ^ b[i, 3]))
    return out


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@njit(cache=True, nogil=True)
def gather_hits(
    q, keys, dist, coll, kind, sid, sid_more, limits, type_mask, form_shift, uuid_form, out, out_sid, out_text
):
    """Of the hits (query ``q``, ``keys``, ``dist``, sorted by query, distance and key), those to report: the key
    is live (type code ``kind & type_mask`` not 0) and the distance within its collection's limit
    (``limits[coll]``, -1 for a collection not asked). Their query, distance, collection, id form and position
    in the hits go to the rows of ``out``, their 128-bit id to ``out_sid``, and a UUID id's 36 characters
    (canonical, lowercase) to its row of ``out_text`` as code points, so that one ``tolist()`` of a ``U36``
    view makes the strings. A key's id is ``sid[k]``, or ``sid_more[k - len(sid)]`` for keys added after
    the table's first batch.

    Returns (reported, ties, other forms): ties counts reported hits with the query and distance of the one
    before (their order is decided by collection and id, in Python), other forms those whose id is not a UUID.
    One call instead of a dozen numpy operations of ~1 us each on a query's few hits."""
    nb = sid.shape[0]
    n = 0
    ties = 0
    others = 0
    for i in range(keys.shape[0]):
        k = keys[i]
        c = np.int64(coll[k])
        code = np.int64(kind[k])
        if (code & type_mask) != 0 and dist[i] <= limits[c]:
            form = code >> form_shift
            if n > 0 and out[0, n - 1] == q[i] and out[1, n - 1] == dist[i]:
                ties += 1
            out[0, n] = q[i]
            out[1, n] = dist[i]
            out[2, n] = c
            out[3, n] = form
            out[4, n] = i
            if k < nb:
                hi = sid[k, 0]
                lo = sid[k, 1]
            else:
                hi = sid_more[k - nb, 0]
                lo = sid_more[k - nb, 1]
            out_sid[n, 0] = hi
            out_sid[n, 1] = lo
            if form == uuid_form:
                t = 0
                for j in range(32):
                    if t == 8 or t == 13 or t == 18 or t == 23:
                        out_text[n, t] = 45  # "-"
                        t += 1
                    word = hi if j < 16 else lo
                    nibble = (word >> np.uint64(60 - 4 * (j & 15))) & np.uint64(15)
                    out_text[n, t] = _HEX_DIGITS[nibble]
                    t += 1
            else:
                others += 1
            n += 1
    return n, ties, others


@njit(cache=True, nogil=True)
def lookup_signals(order, coll, kind, form_shift, sid, sid_more, q_coll, q_form, q_sid, out):
    """For each target (collection, id form, 128-bit id), the lower-bound position in ``order`` (keys sorted
    by those four fields, compared through the per-key arrays; a key's form is ``kind >> form_shift``, its id
    ``sid[k]`` or ``sid_more[k - len(sid)]``) into ``out``; returns nothing.

    The caller checks whether the key at that position is the target. One binary search per target over
    int32 keys: the matcher keeps no Python dict of its 10M signals.
    """
    n = order.shape[0]
    nb = sid.shape[0]
    for i in range(q_coll.shape[0]):
        c = q_coll[i]
        f = q_form[i]
        s0 = q_sid[i, 0]
        s1 = q_sid[i, 1]
        lo = 0
        hi = n
        while lo < hi:
            mid = (lo + hi) >> 1
            k = np.int64(order[mid])
            kc = coll[k]
            kf = kind[k] >> form_shift
            if k < nb:
                k0 = sid[k, 0]
                k1 = sid[k, 1]
            else:
                k0 = sid_more[k - nb, 0]
                k1 = sid_more[k - nb, 1]
            less = kc < c or (kc == c and (kf < f or (kf == f and (k0 < s0 or (k0 == s0 and k1 < s1)))))
            if less:
                lo = mid + 1
            else:
                hi = mid
        out[i] = lo


@njit(cache=True, nogil=True)
def _id_word(form, sid, i, w):
    """Word ``w`` of the sort key of signal ``i``: (form, sid high, sid low)."""
    if w == 0:
        return np.uint64(form[i])
    return sid[i, w - 1]


@njit(cache=True, nogil=True)
def _id_less(form, sid, a, b):
    fa = form[a]
    fb = form[b]
    if fa != fb:
        return fa < fb
    if sid[a, 0] != sid[b, 0]:
        return sid[a, 0] < sid[b, 0]
    return sid[a, 1] < sid[b, 1]


@njit(cache=True, nogil=True)
def _id_equal(form, sid, a, b):
    return form[a] == form[b] and sid[a, 0] == sid[b, 0] and sid[a, 1] == sid[b, 1]


@njit(cache=True, nogil=True)
def _insertion_sort_ids(form, sid, perm, lo, hi):
    """Insertion sort of ``perm[lo:hi]`` by id; position of a duplicate, or -1. Once per small bucket."""
    for i in range(lo + 1, hi):
        v = perm[i]
        j = i - 1
        while j >= lo and _id_less(form, sid, v, perm[j]):
            perm[j + 1] = perm[j]
            j -= 1
        perm[j + 1] = v
    for i in range(lo + 1, hi):
        if _id_equal(form, sid, perm[i - 1], perm[i]):
            return i
    return -1


@njit(cache=True, nogil=True)
def _digit_width(size):
    """Bits of a radix digit for ``size`` keys: about eight keys per bucket, 1..20 bits."""
    width = 1
    while width < 20 and (np.int64(1) << np.int64(width + 3)) < size:
        width += 1
    return width


SORT_AHEAD = 64  # keys ahead whose ids sort_ids prefetches while it sorts the small buckets


@njit(cache=True, nogil=True)
def sort_ids(form, sid, perm, scratch):
    """Sort ``perm`` (int32 positions into ``form``/``sid``) in place by (form, sid[:, 0], sid[:, 1]); returns
    the position in ``perm`` of an entry equal to its predecessor (a duplicate id), or -1.

    An MSD radix sort whose digit adapts to the range: it starts at the highest bit in which the range's keys
    differ (so small ints and random UUIDs both split evenly) and is as wide as gives about eight keys per
    bucket (at most 20 bits); buckets of up to 32 keys are insertion-sorted at once. Memory: the int32
    ``scratch`` (len(perm)), a count table of up to 1M entries and a stack of n/32 ranges; no int64 or
    (n, 3) temporaries.
    """
    n = perm.shape[0]
    if n <= 32:
        return _insertion_sort_ids(form, sid, perm, 0, n)
    at_sid = sid.ctypes.data
    at_form = form.ctypes.data
    counts = np.empty((np.int64(1) << _digit_width(n)) + 1, dtype=np.int64)
    cap = n // 32 + 64
    st_lo = np.empty(cap, dtype=np.int64)
    st_hi = np.empty(cap, dtype=np.int64)
    st_w = np.empty(cap, dtype=np.int64)
    st_lo[0] = 0
    st_hi[0] = n
    st_w[0] = 0
    top = 1
    while top > 0:  # every range on the stack holds more than 32 keys
        top -= 1
        lo = st_lo[top]
        hi = st_hi[top]
        w = st_w[top]
        size = hi - lo
        kmin = _id_word(form, sid, perm[lo], w)
        kmax = kmin
        for i in range(lo + 1, hi):
            k = _id_word(form, sid, perm[i], w)
            kmin = min(kmin, k)
            kmax = max(kmax, k)
        if kmin == kmax:  # the range agrees on this word: sort on the next one
            if w == 2:
                return lo + 1  # every key of the range is the same
            st_w[top] = w + 1
            top += 1
            continue
        high = 63
        diff = kmin ^ kmax
        while (diff >> np.uint64(high)) == np.uint64(0):
            high -= 1
        width = min(_digit_width(size), high + 1)
        shift = np.uint64(high + 1 - width)
        nbk = np.int64(1) << np.int64(width)
        mask = np.uint64(nbk - 1)
        for b in range(nbk + 1):
            counts[b] = 0
        for i in range(lo, hi):
            b = np.int64((_id_word(form, sid, perm[i], w) >> shift) & mask)
            counts[b + 1] += 1
        counts[0] = lo
        for b in range(1, nbk + 1):
            counts[b] += counts[b - 1]
        for i in range(lo, hi):  # counts[b] ends up at the end of bucket b
            b = np.int64((_id_word(form, sid, perm[i], w) >> shift) & mask)
            scratch[counts[b]] = perm[i]
            counts[b] += 1
        for i in range(lo, hi):
            perm[i] = scratch[i]
        # the small buckets below read their keys' ids at random (160 MB at 10M): the ids SORT_AHEAD
        # positions ahead are prefetched as the buckets are swept (measured at 10M UUIDs: 3.0 s -> 1.7 s)
        ahead = lo
        start = lo
        for b in range(nbk):
            end = counts[b]
            stop = min(end + SORT_AHEAD, hi)
            while ahead < stop:
                k = np.int64(perm[ahead])
                _prefetch_at(at_sid + 16 * k)
                _prefetch_at(at_form + k)
                ahead += 1
            if end - start > 32:
                st_lo[top] = start
                st_hi[top] = end
                st_w[top] = w
                top += 1
            elif end - start > 1:
                dup = _insertion_sort_ids(form, sid, perm, start, end)
                if dup >= 0:
                    return dup
            start = end
    return -1


@njit(cache=True, nogil=True)
def insert_sorted(buf, n, pos, new):
    """Insert ``new[i]`` before ``buf[pos[i]]`` (``pos`` non-decreasing, positions among the first ``n``) in
    place: ``buf`` has room for ``n + len(new)``. Filled from the end, so nothing is overwritten before it
    moved, and no second array of the table's size is needed."""
    end = n
    for i in range(new.shape[0] - 1, -1, -1):
        p = pos[i]
        for j in range(end - 1, p - 1, -1):
            buf[j + i + 1] = buf[j]
        buf[p + i] = new[i]
        end = p
