# mypy: ignore-errors
# (numba kernels: numba infers and checks their types when it compiles them; mypy cannot follow @intrinsic)
"""The signal table's kernels: mapping a search's hits to signal ids, looking ids up, sorting a batch of
ids and inserting new keys into the sorted order."""

from __future__ import annotations

import numpy as np
from numba import njit

from partners.matching.kernels.common import prefetch_at

_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@njit(cache=True, nogil=True)
def gather_hits(
    q, keys, dist, coll, kind, sid, sid_more, limits, type_mask, form_shift, uuid_form, out, out_sid, out_text
):
    """Of the hits (query ``q``, ``keys``, ``dist``, sorted by query, distance and key), those to report: the key
    is live (type code ``kind & type_mask`` not 0) and the distance within its collection's limit
    (``limits[coll]``, -1 for a collection not asked; a collection past the end of ``limits`` was created
    after the caller planned its match, and is not asked either). Their query, distance, collection, id form
    and position in the hits go to the rows of ``out``, their 128-bit id to ``out_sid``, and a UUID id's 36
    characters (canonical, lowercase) to its row of ``out_text`` as code points, so that one ``tolist()`` of a
    ``U36`` view makes the strings. A key's id is ``sid[k]``, or ``sid_more[k - len(sid)]`` for keys added after
    the table's first batch.

    Returns (reported, ties, other forms): ties counts reported hits with the query and distance of the one
    before (their order is decided by collection and id, in Python), other forms those whose id is not a UUID.
    One call instead of a dozen numpy operations, each paying numpy's call overhead on a query's few hits."""
    nb = sid.shape[0]
    n_limits = limits.shape[0]
    n = 0
    ties = 0
    others = 0
    for i in range(keys.shape[0]):
        k = keys[i]
        c = np.int64(coll[k])
        code = np.int64(kind[k])
        if (code & type_mask) != 0 and c < n_limits and dist[i] <= limits[c]:
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
        # positions ahead are prefetched as the buckets are swept, so those misses overlap
        ahead = lo
        start = lo
        for b in range(nbk):
            end = counts[b]
            stop = min(end + SORT_AHEAD, hi)
            while ahead < stop:
                k = np.int64(perm[ahead])
                prefetch_at(at_sid + 16 * k)
                prefetch_at(at_form + k)
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
