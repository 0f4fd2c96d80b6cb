# mypy: ignore-errors
# (numba kernels: numba infers and checks their types when it compiles them; mypy cannot follow @intrinsic)
"""Multi-index hashing search: every live stored entry within a threshold, over all segments in one call."""

from __future__ import annotations

import numpy as np
from numba import njit

from partners.matching.kernels.common import (
    PER_U8,
    PER_U16,
    chunk_value,
    i64_at,
    mapped_value,
    popcnt,
    prefetch_at,
    u8_at,
    u16_at,
    u32_at,
    u64_at,
)

# Each pass of an MIH query prefetches, for up to PREFETCH_WINDOW items, what the next pass reads (the
# lines, 256 KiB, stay in L2 until then); past that, a pass prefetches its own input PREFETCH_AHEAD items
# ahead (large thresholds probe ~100k keys a query, whose lines would evict each other).
PREFETCH_WINDOW = 4096
PREFETCH_AHEAD = 16


# Fields of a segment's row in the descriptor ``mih_search`` takes (int64 each; addresses are of arrays the
# caller keeps alive). Per chunk c: D_OFFS + c (address of its bucket starts), D_OWIDTH + c (their width: 1
# or 2 = packed lines, 4 = plain uint32), D_ROWTAB + c, D_OCC + c (addresses of its rows and occupancy
# bitmap), D_RADII + c (probe radius, -1 = not probed) and D_NMASK + c (how many masks of D_MASKS that
# radius uses). A segment whose table has a key map (D_MAPPED = 1, see ``pdq_index.KeyMap``) has per chunk
# D_KMASK + 4 c + w (the chunk's bits of word w, a uint64 mask stored as int64) and D_KSHIFT + 4 c + w (the key
# bit where they land); without one, chunk c is bits c * D_BITS .. of the hash.
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
D_MAPPED = 11  # 1: chunk keys through the key map (D_KTAB ..), 0: chunk c is bits c * D_BITS ..
D_OFFS = 16
D_ROWTAB = D_OFFS + MAX_CHUNKS
D_OCC = D_ROWTAB + MAX_CHUNKS
D_RADII = D_OCC + MAX_CHUNKS
D_NMASK = D_RADII + MAX_CHUNKS
D_OWIDTH = D_NMASK + MAX_CHUNKS
D_KMASK = D_OWIDTH + MAX_CHUNKS
D_KSHIFT = D_KMASK + 4 * MAX_CHUNKS
D_WIDTH = D_KSHIFT + 4 * MAX_CHUNKS


@njit(cache=True, nogil=True)
def _mapped(desc, s, c, w0, w1, w2, w3):
    """Chunk ``c``'s key of a hash under segment ``s``'s key map. Called once per chunk of a query and per
    earlier chunk of a match, not per candidate (it takes the descriptor array)."""
    m = D_KMASK + 4 * c
    t = D_KSHIFT + 4 * c
    return mapped_value(
        w0, w1, w2, w3,
        np.uint64(desc[s, m]), np.uint64(desc[s, m + 1]), np.uint64(desc[s, m + 2]), np.uint64(desc[s, m + 3]),
        np.uint64(desc[s, t + 1]), np.uint64(desc[s, t + 2]), np.uint64(desc[s, t + 3]),
    )  # fmt: skip


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
    query's key XOR every mask of weight <= radii[c]. The chunks may be any disjoint sets of bits (a key
    map, D_MAPPED): Hamming distance does not depend on the order of the bits, so the argument holds for any
    partition, as long as the query is split like the stored hashes. A candidate is verified with the full
    256-bit distance and reported only from the first chunk that can find it, so no deduplication memory is
    needed. Each segment runs in passes (probe keys, bucket bounds, candidate rows, verification) whose loads are
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
    qkey = np.empty(MAX_CHUNKS, dtype=np.int64)  # the query's key in each chunk of the segment
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
            mapped = desc[s, D_MAPPED] != 0
            for c in range(desc[s, D_CHUNKS]):
                if mapped:
                    qkey[c] = _mapped(desc, s, c, q0, q1, q2, q3)
                else:
                    qkey[c] = chunk_value(q0, q1, q2, q3, np.int64(c) * bits, bits)
            npr = 0
            for c in range(desc[s, D_CHUNKS]):
                nm = desc[s, D_NMASK + c]
                key = qkey[c]
                occ = desc[s, D_OCC + c]
                offs = desc[s, D_OFFS + c]
                width = desc[s, D_OWIDTH + c]
                for j in range(nm):
                    kk = key ^ i64_at(masks, j)
                    if (u64_at(occ, kk >> 6) >> np.uint64(kk & 63)) & np.uint64(1):
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
                            prefetch_at(at)
                        pr[npr] = at
                        pe[npr] = e
                        pc[npr] = c
                        npr += 1
            total = 0
            for i in range(npr):
                ahead = i + PREFETCH_AHEAD
                if ahead >= PREFETCH_WINDOW and ahead < npr:
                    prefetch_at(pr[ahead])
                c = pc[i]
                at = pr[i]
                e = pe[i]
                width = desc[s, D_OWIDTH + c]
                if width == 1:
                    lo = np.int64(u32_at(at, 0)) + np.int64(u8_at(at + 4, e))
                    hi = np.int64(u32_at(at, 0)) + np.int64(u8_at(at + 4, e + 1))
                elif width == 2:
                    lo = np.int64(u32_at(at, 0)) + np.int64(u16_at(at + 4, e))
                    hi = np.int64(u32_at(at, 0)) + np.int64(u16_at(at + 4, e + 1))
                else:
                    lo = np.int64(u32_at(at, 0))
                    hi = np.int64(u32_at(at, 1))
                if i < PREFETCH_WINDOW:
                    prefetch_at(desc[s, D_ROWTAB + c] + lo * 4)
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
                    prefetch_at(desc[s, D_ROWTAB + pc[ahead]] + plo[ahead] * 4)
                rows = desc[s, D_ROWTAB + pc[i]]
                for t in range(plo[i], phi[i]):
                    row = np.int64(u32_at(rows, t))
                    if row < limit:  # rows a merge in progress appended are still the side table's
                        if nc < PREFETCH_WINDOW:
                            prefetch_at((hbase if row < nbase else htail) + row * 32)
                        crow[nc] = row
                        cchk[nc] = pc[i]
                        nc += 1
            dead = desc[s, D_DEAD]
            for i in range(nc):
                ahead = i + PREFETCH_AHEAD
                if ahead >= PREFETCH_WINDOW and ahead < nc:
                    prefetch_at((hbase if crow[ahead] < nbase else htail) + crow[ahead] * 32)
                row = crow[i]
                at = (hbase if row < nbase else htail) + row * 32
                h0 = u64_at(at, 0)
                h1 = u64_at(at, 1)
                h2 = u64_at(at, 2)
                h3 = u64_at(at, 3)
                d = np.int64(popcnt(h0 ^ q0) + popcnt(h1 ^ q1) + popcnt(h2 ^ q2) + popcnt(h3 ^ q3))
                if d <= threshold and u8_at(dead, row) == 0:
                    c = cchk[i]
                    first = True
                    for c2 in range(c):
                        rad = desc[s, D_RADII + c2]
                        if rad >= 0:
                            if mapped:
                                x = _mapped(desc, s, c2, h0, h1, h2, h3)
                            else:
                                x = chunk_value(h0, h1, h2, h3, np.int64(c2) * bits, bits)
                            if np.int64(popcnt(np.uint64(x ^ qkey[c2]))) <= rad:
                                first = False
                                break
                    if first:
                        if cnt < cap:
                            dense = desc[s, D_DENSE]
                            out_q[cnt] = qi
                            out_id[cnt] = row if row < dense else i64_at(desc[s, D_IDS], row - dense)
                            out_dist[cnt] = d
                        cnt += 1
        if cnt > cap:  # this query did not fit: report the queries done before it
            return qi, qstart
        _sort_query_hits(out_id, out_dist, qstart, cnt)
    return queries.shape[0], cnt
