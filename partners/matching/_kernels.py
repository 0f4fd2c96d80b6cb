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

# Stored hashes per tile of the brute-force scan: 16,384 x 32 bytes = 512 KiB stays in L2 (1 MiB per core
# here) while every query of the batch passes over it.
SCAN_TILE = 16384
# How many candidates ahead the MIH loops prefetch: enough to cover a DRAM miss (measured +30% at 10M).
PREFETCH_AHEAD = 16


@intrinsic
def _popcnt(typingctx, x):
    """LLVM ``ctpop`` on a uint64: one POPCNT instruction on the host CPU."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@intrinsic
def _prefetch(typingctx, arr, idx):
    """``llvm.prefetch`` of ``arr[idx]`` (row ``idx`` if 2-D), lowered inline: no reference counting."""
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        indices = [args[1]] + [zero] * (aryty.ndim - 1)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, indices, wraparound=False)
        i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        builder.call(fn, [i8p, i32(0), i32(3), i32(1)])  # read, keep in all cache levels, data
        return context.get_dummy_value()

    return sig, codegen


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
def build_tables(hashes, bits, offs, rows, occ):
    """Fill the CSR bucket tables of ``m`` chunks of ``bits`` bits, m = len(offs) // (2^bits + 1).

    ``offs`` (m x (2^bits + 1)) are bucket starts, ``rows`` (m x n) the row ids bucket after bucket and
    ``occ`` (m x 2^bits / 64 words) a bitmap of non-empty buckets. A counting sort, O(n) per chunk, so 10M
    hashes build in seconds without argsort's int64 temporaries; rows in a bucket stay ascending. The caller
    allocates the outputs (huge pages, see ``memory.py``).
    """
    n = hashes.shape[0]
    nb = np.int64(1) << np.int64(bits)
    nb1 = nb + np.int64(1)
    m = offs.shape[0] // nb1
    words = nb >> np.int64(6)
    for c in range(m):
        base = np.int64(c) * nb1
        start = np.int64(c) * np.int64(bits)
        for k in range(nb1):
            offs[base + k] = np.uint32(0)
        for r in range(n):
            k = _chunk(hashes[r, 0], hashes[r, 1], hashes[r, 2], hashes[r, 3], start, bits)
            offs[base + k] += np.uint32(1)
        obase = np.int64(c) * words
        for w in range(words):
            occ[obase + w] = np.uint64(0)
        for k in range(nb):
            if offs[base + k] != np.uint32(0):
                occ[obase + (k >> 6)] |= np.uint64(1) << np.uint64(k & 63)
        # offs[k] = end of bucket k; filling each bucket from its end, rows taken last to first, leaves
        # offs[k] at the bucket's start with its rows ascending, without a cursor array (32 MiB at 23 bits)
        for k in range(1, nb):
            offs[base + k] += offs[base + k - 1]
        offs[base + nb] = np.uint32(n)
        rbase = np.int64(c) * np.int64(n)
        for r in range(n - 1, -1, -1):
            k = _chunk(hashes[r, 0], hashes[r, 1], hashes[r, 2], hashes[r, 3], start, bits)
            offs[base + k] -= np.uint32(1)
            rows[rbase + np.int64(offs[base + k])] = np.uint32(r)


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
def mih_search(
    queries, threshold, hashes_t, offs_t, rows_t, occ_t, dead_t, ids_t, bits_a, radii_a, out_q, out_id, out_dist
):
    """Every live stored entry within ``threshold`` of each query, over up to three MIH tables in one call.

    Segment s is table ``(hashes_t[s], offs_t[s], rows_t[s], occ_t[s])`` of ``bits_a[s]``-bit chunks probed
    with radii ``radii_a[s]`` (-1 = chunk skipped), tombstones ``dead_t[s]`` and ids ``ids_t[s]`` (an empty
    ids array reports row numbers). Per query the segments are searched in turn (main, merging, side), so an
    index with a side table costs one call, and the query's hits are sorted by (distance, id) here.

    Exact recall by pigeonhole: the radii satisfy sum(radii + 1) > threshold, so a stored hash within the
    threshold agrees with the query to within radii[c] on some chunk c. A candidate is verified with the full
    256-bit distance and reported only from the first chunk that can find it, so no deduplication memory is
    needed. Each segment runs in phases (probe keys, bucket bounds, candidate rows, verification) whose loads
    are independent, with software prefetch, so the CPU overlaps the cache misses.

    Returns (queries done, matches written): when the matches of a query do not fit in ``out_*`` it stops
    after the previous query and the caller resumes from there with more room.
    """
    nseg = len(hashes_t)
    cap = out_q.shape[0]
    cnt = 0
    pos = np.empty(64, dtype=np.int64)
    maxp = 1
    for s in range(nseg):
        if hashes_t[s].shape[0] == 0:
            continue
        bits = bits_a[s]
        tot_s = 0
        for c in range(radii_a.shape[1]):
            rad = radii_a[s, c]
            if rad < 0:
                continue
            tot = 1
            comb = 1
            for k in range(1, rad + 1):
                comb = comb * (bits - k + 1) // k
                tot += comb
            tot_s += tot
        maxp = max(maxp, tot_s)
    pr = np.empty(maxp, dtype=np.int64)
    pc = np.empty(maxp, dtype=np.int64)
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
            hashes = hashes_t[s]
            n = hashes.shape[0]
            if n == 0:
                continue
            offs = offs_t[s]
            rows = rows_t[s]
            occ = occ_t[s]
            dead = dead_t[s]
            ids = ids_t[s]
            map_ids = ids.shape[0] > 0
            bits = bits_a[s]
            m = radii_a.shape[1]
            nb1 = (np.int64(1) << np.int64(bits)) + np.int64(1)
            npr = 0
            for c in range(m):
                rad = radii_a[s, c]
                if rad < 0:
                    continue
                key = _chunk(q0, q1, q2, q3, np.int64(c) * np.int64(bits), bits)
                base = np.int64(c) * nb1
                for k in range(rad + 1):
                    for j in range(k):
                        pos[j] = j
                    while True:
                        mask = np.int64(0)
                        for j in range(k):
                            mask |= np.int64(1) << pos[j]
                        kk = key ^ mask
                        ob = np.int64(c) * (np.int64(1) << np.int64(bits - 6)) + (kk >> 6)
                        if (occ[ob] >> np.uint64(kk & 63)) & np.uint64(1):
                            pr[npr] = base + kk
                            pc[npr] = c
                            npr += 1
                        j = k - 1
                        while j >= 0 and pos[j] == bits - k + j:
                            j -= 1
                        if j < 0:
                            break
                        pos[j] += 1
                        for j2 in range(j + 1, k):
                            pos[j2] = pos[j2 - 1] + 1
            total = 0
            for i in range(min(npr, PREFETCH_AHEAD)):
                _prefetch(offs, pr[i])
            for i in range(npr):
                if i + PREFETCH_AHEAD < npr:
                    _prefetch(offs, pr[i + PREFETCH_AHEAD])
                lo = np.int64(offs[pr[i]])
                hi = np.int64(offs[pr[i] + 1])
                plo[i] = lo
                phi[i] = hi
                total += hi - lo
            if total > ccap:
                ccap = total * 2
                crow = np.empty(ccap, dtype=np.int64)
                cchk = np.empty(ccap, dtype=np.int64)
            nc = 0
            for i in range(npr):
                if i + PREFETCH_AHEAD < npr:
                    _prefetch(rows, pc[i + PREFETCH_AHEAD] * np.int64(n) + plo[i + PREFETCH_AHEAD])
                rbase = pc[i] * np.int64(n)
                for t in range(rbase + plo[i], rbase + phi[i]):
                    crow[nc] = np.int64(rows[t])
                    cchk[nc] = pc[i]
                    nc += 1
            for i in range(min(nc, PREFETCH_AHEAD)):
                _prefetch(hashes, crow[i])
            for i in range(nc):
                if i + PREFETCH_AHEAD < nc:
                    _prefetch(hashes, crow[i + PREFETCH_AHEAD])
                row = crow[i]
                d = np.int64(
                    _popcnt(hashes[row, 0] ^ q0)
                    + _popcnt(hashes[row, 1] ^ q1)
                    + _popcnt(hashes[row, 2] ^ q2)
                    + _popcnt(hashes[row, 3] ^ q3)
                )
                if d <= threshold and dead[row] == 0:
                    c = cchk[i]
                    first = True
                    for c2 in range(c):
                        if radii_a[s, c2] >= 0:
                            s2 = np.int64(c2) * np.int64(bits)
                            x = _chunk(hashes[row, 0], hashes[row, 1], hashes[row, 2], hashes[row, 3], s2, bits)
                            y = _chunk(q0, q1, q2, q3, s2, bits)
                            if np.int64(_popcnt(np.uint64(x ^ y))) <= radii_a[s, c2]:
                                first = False
                                break
                    if first:
                        if cnt < cap:
                            out_q[cnt] = qi
                            out_id[cnt] = ids[row] if map_ids else row
                            out_dist[cnt] = d
                        cnt += 1
        if cnt > cap:  # this query did not fit: report the queries done before it
            return qi, qstart
        _sort_query_hits(out_id, out_dist, qstart, cnt)
    return queries.shape[0], cnt


@njit(cache=True, nogil=True)
def scan_search(queries, threshold, hashes, dead, ids, tile, row_start, q_start, out_q, out_id, out_dist):
    """Every live stored row within ``threshold`` of each query, by a tiled exhaustive scan (unordered).

    The stored hashes are copied tile by tile into four word arrays (structure of arrays) that stay in L2
    while every query of the batch passes over them. The inner loop over a tile (XOR, POPCNT, a distance
    byte per row, a count within the threshold) has no branch and starts at 0, so LLVM vectorizes it
    (AVX-512 VPOPCNTQ here); measured: splitting it into blocks with a branch each, or a ``range(b0, b1)``
    loop, stopped the vectorization (5x slower). Only a (tile, query) with a hit reads its distance bytes
    again to collect the rows. An empty ``ids`` reports row numbers.

    Resumable: starts at tile ``row_start`` (a multiple of ``tile``), query ``q_start`` in it, and returns
    (row_start, q_start, count) of the first (tile, query) pair whose hits did not fit in ``out_*``
    (count = hits written before it), or (n, 0, count) when done.
    """
    n = hashes.shape[0]
    nq = queries.shape[0]
    cap = out_q.shape[0]
    map_ids = ids.shape[0] > 0
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
            # branch-free and vectorized: distances into a byte per row, and how many are within the threshold
            hit = np.uint64(0)
            for r in range(m):
                d = _popcnt(w0[r] ^ q0) + _popcnt(w1[r] ^ q1) + _popcnt(w2[r] ^ q2) + _popcnt(w3[r] ^ q3)
                dist[r] = np.uint8(min(d, np.uint64(255)))  # 256 (all bits differ) must not wrap to 0
                hit += np.uint64(d <= thr)
            if hit != np.uint64(0):
                for r in range(m):
                    row = np.int64(t0) + np.int64(r)
                    if np.uint64(dist[r]) <= thr and dead[row] == 0:
                        if cnt < cap:
                            out_q[cnt] = qi
                            out_id[cnt] = ids[row] if map_ids else row
                            out_dist[cnt] = np.int64(dist[r])
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


@njit(cache=True, nogil=True)
def lookup_signals(order, coll, kind, form_shift, sid, q_coll, q_form, q_sid, out):
    """For each target (collection, id form, 128-bit id), the lower-bound position in ``order`` (keys sorted
    by those four fields, compared through the per-key arrays; a key's form is ``kind >> form_shift``) into
    ``out``; returns nothing.

    The caller checks whether the key at that position is the target. One binary search per target over
    int32 keys: the matcher keeps no Python dict of its 10M signals.
    """
    n = order.shape[0]
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
            k0 = sid[k, 0]
            k1 = sid[k, 1]
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
        start = lo
        for b in range(nbk):
            end = counts[b]
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
def insert_sorted(order, pos, new, out):
    """``out`` = ``order`` with ``new[i]`` inserted before ``order[pos[i]]`` (``pos`` non-decreasing)."""
    j = 0
    o = 0
    for i in range(new.shape[0]):
        p = pos[i]
        while j < p:
            out[o] = order[j]
            o += 1
            j += 1
        out[o] = new[i]
        o += 1
    while j < order.shape[0]:
        out[o] = order[j]
        o += 1
        j += 1
