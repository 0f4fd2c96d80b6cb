# mypy: ignore-errors
# (numba kernels: numba infers and checks their types when it compiles them; mypy cannot follow @intrinsic)
"""The tiled exhaustive scan (large thresholds in batches) and a row-wise distance."""

from __future__ import annotations

import numpy as np
from numba import njit

from partners.matching.kernels.common import popcnt

# Stored hashes per tile of the brute-force scan: 8,192 x 32 bytes = 256 KiB, which stays in a core's L2 while
# every query of the batch passes over it. Not chosen from the machine's L2 size: the loop is bound by its
# popcounts, and larger tiles on a larger L2 gained nothing.
SCAN_TILE = 8192


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
    0, so LLVM vectorizes it (splitting it into blocks with a branch each, or a ``range(b0, b1)`` loop,
    stops the vectorization). Without AVX-512 VPOPCNTQ, LLVM's vector popcount is a nibble lookup (PSHUFB)
    whose cost is per byte, so the loop reads only three of the four words: the distance over words 0-2 (at
    most 192, a byte per row) is a lower bound of the distance, and a random row's is within 64 with
    probability ~2e-6. Only a (tile, query) with a row within the threshold on those words reads its distance
    bytes again and adds word 3 for those rows. A first pass over two words (half the bytes) would let ~2% of
    the rows through at d = 52, and collecting those costs more than it saves.

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
                d = popcnt(w0[r] ^ q0) + popcnt(w1[r] ^ q1) + popcnt(w2[r] ^ q2)
                dist[r] = np.uint8(d)
                hit += np.uint64(d <= thr)
            if hit != np.uint64(0):
                for r in range(m):
                    if np.uint64(dist[r]) <= thr:
                        d = np.uint64(dist[r]) + popcnt(w3[r] ^ q3)
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
        d01 = popcnt(a[i, 0] ^ b[i, 0]) + popcnt(a[i, 1] ^ b[i, 1])
        out[i] = np.int64(d01 + popcnt(a[i, 2] ^ b[i, 2]) + popcnt(a[i, 3] ^ b[i, 3]))
    return out
