"""The matcher's table of signals: int64 key -> (collection, signal id, type), in numpy arrays, no dicts.

A Python dict of 10M signals costs well over a gigabyte; this table costs 23 bytes per key:

- ``coll`` (int16): index of the collection in ``collections`` (at most 32,767 collections);
- ``kind`` (int8): signal type code (0 = free key) plus the id's form in the high bits;
- ``sid`` ((n, 2) uint64): the signal id in 128 bits. The hub issues UUIDs (``str(uuid.uuid4())``), whose
  128 bits are stored as is; integer ids are stored as their int64 value. Any other string id is kept as a
  Python string in ``text`` (compact only for the forms the hub uses) and stored here as a 128-bit BLAKE2b
  digest, which is what lookups compare. Keys of the first batch (a bulk load, or a loaded table) are in
  ``sid``, which is never copied to grow (a bulk load adopts the caller's array); later keys are in
  ``sid_more`` (key k at ``sid_more[k - len(sid)]``);
- ``order`` (int32): every key ever assigned, sorted by (collection, form, sid), for lookups by binary search
  (``kernels.gather.lookup_signals``). Removed keys stay in it (marked free) and are reused when the same signal
  comes back; a new signal gets a new key, so the arrays grow by 23 bytes per distinct signal ever added.

``coll``, ``kind``, ``sid_more`` and ``order`` keep room for more keys (:func:`room`, address space only), so
a batch of adds into a table of 10M writes in place: the growth copies of 10M keys (sid alone 160 MB) are
what used to take a 10,000-signal delta 160 MB over the matcher's steady memory.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from partners.matching import memory
from partners.matching.errors import DuplicateIdError, MatchingError
from partners.matching.kernels import gather
from partners.matching.signals import I64Array, SignalType

SignalId = int | str

# Saved in the signal table's kind array: never renumber (0 = a free key; at most 15 types)
TYPE_CODES = {
    SignalType.PDQ: 1, SignalType.MD5: 2, SignalType.SHA256: 3, SignalType.VPDQ: 4, SignalType.VIDEO_MD5: 5
}  # fmt: skip
CODE_TYPES = {v: k for k, v in TYPE_CODES.items()}
FORM_UUID, FORM_INT, FORM_TEXT = 1, 2, 3  # how a signal id is held in its 128 bits
_FORM_SHIFT = 4
_TYPE_MASK = (1 << _FORM_SHIFT) - 1
MAX_KEYS = 2**31 - 1  # keys are int32 in ``order``
COLL_DTYPE = np.int16  # 2 bytes per key: 20 MB less than int32 at 10M signals
MAX_COLLECTIONS = int(np.iinfo(COLL_DTYPE).max)

U64Array = npt.NDArray[np.uint64]


def encode_ids(signal_ids: Sequence[SignalId]) -> tuple[npt.NDArray[np.int8], U64Array, dict[int, str]]:
    """(form, 128-bit sid) of each id, and the text of the ids kept as strings (by position)."""
    n = len(signal_ids)
    form = np.empty(n, dtype=np.int8)
    sid = np.zeros((n, 2), dtype=np.uint64)
    text: dict[int, str] = {}
    for i, s in enumerate(signal_ids):
        if isinstance(s, bool) or not isinstance(s, int | str):
            raise MatchingError(f"a signal id must be an int or a str, got {type(s).__name__}")
        if isinstance(s, int) and -(2**63) <= s < 2**63:
            form[i] = FORM_INT
            sid[i, 0] = np.uint64(s & (2**64 - 1))
            continue
        value = str(s)
        u = _as_uuid(value) if isinstance(s, str) else None
        if u is not None:
            form[i] = FORM_UUID
            sid[i, 0], sid[i, 1] = u >> 64, u & (2**64 - 1)
        else:
            form[i] = FORM_TEXT
            digest = int.from_bytes(hashlib.blake2b(value.encode(), digest_size=16).digest(), "big")
            sid[i, 0], sid[i, 1] = digest >> 64, digest & (2**64 - 1)
            text[i] = value
    return form, sid, text


def room(n: int) -> int:
    """Capacity for ``n`` keys and the adds to come: a quarter more (address space only, in
    :func:`memory.zeros` arrays: pages cost memory once written), so a table grows without copying its
    arrays for a long while."""
    return n + max(n // 4, 1024)


def sort_batch(form: npt.NDArray[np.int8], sid: U64Array, *, reserve: int = 0) -> npt.NDArray[np.int32]:
    """Positions of a batch of ids sorted by (form, sid), or :class:`DuplicateIdError` if an id repeats.

    A radix sort in numba over an int32 permutation (``kernels.gather.sort_ids``): 80 MB at 10M UUIDs (the
    permutation and its scratch), where ``np.unique(axis=0)`` of an (n, 3) array needs gigabytes. The result
    is also the batch's slice of the table's ``order``; ``reserve`` keys of room after it (see :func:`room`)
    let a first batch's result become ``order`` and grow in place.
    """
    n = len(form)
    if n >= MAX_KEYS:
        raise MatchingError("the signal table is full (2^31 keys)")
    perm: npt.NDArray[np.int32] = memory.empty(n + reserve, np.int32)[:n] if reserve else np.empty(n, np.int32)  # type: ignore[assignment]
    perm[:] = np.arange(n, dtype=np.int32)
    scratch = np.empty(n if n > 32 else 0, dtype=np.int32)
    if gather.sort_ids(form, sid, perm, scratch) >= 0:
        raise DuplicateIdError("a signal id appears twice in one batch of adds")
    return perm


def uuid_words(signal_ids: Sequence[str]) -> U64Array:
    """Canonical UUID strings as (n, 2) uint64 (high, low) words, the bulk form of :meth:`SignalTable.add`."""
    out = np.empty((len(signal_ids), 2), dtype=np.uint64)
    for i, s in enumerate(signal_ids):
        u = _as_uuid(s)
        if u is None:
            raise MatchingError(f"not a canonical UUID: {s!r:.80}")
        out[i, 0], out[i, 1] = u >> 64, u & (2**64 - 1)
    return out


def _as_uuid(value: str) -> int | None:
    """The 128-bit value of a canonical (lowercase, hyphenated) UUID string, else None: only a string that
    prints back identically may be stored as bits."""
    if len(value) != 36:
        return None
    try:
        u = uuid.UUID(value)
    except ValueError:
        return None
    return u.int if str(u) == value else None


class Reported(NamedTuple):
    """The hits of a search to report, in its order (per query: distance, then key), as lists."""

    queries: list[int]  # the query of each hit, as its index in the batch
    distances: list[int]
    collections: list[int]  # index into SignalTable.collections
    ids: list[SignalId]
    ties: bool  # whether a hit has the query and distance of the one before it


class SignalTable:
    """Keys and what they stand for; see the module docstring for the layout."""

    def __init__(self) -> None:
        self.collections: list[str] = []
        self._coll_index: dict[str, int] = {}
        self.coll = np.zeros(0, dtype=COLL_DTYPE)
        self.kind = np.zeros(0, dtype=np.int8)
        self.sid = np.zeros((0, 2), dtype=np.uint64)  # ids of keys 0 .. len(sid) - 1
        self.sid_more = np.zeros((0, 2), dtype=np.uint64)  # ids of keys len(sid) .., with room
        self.order = np.zeros(0, dtype=np.int32)  # a view of the first ``size`` entries of ``_order_room``
        self._order_room = self.order
        self.text: dict[int, str] = {}  # key -> id, only for ids that are neither UUIDs nor ints
        self.size = 0  # keys assigned so far
        self.live = 0

    def collection_index(self, name: str, create: bool = False) -> int:
        """The index of a collection (-1 if unknown and not ``create``)."""
        found = self._coll_index.get(name)
        if found is None:
            if not create:
                return -1
            if len(self.collections) >= MAX_COLLECTIONS:
                raise MatchingError(f"a matcher holds at most {MAX_COLLECTIONS} collections")
            found = self._coll_index[name] = len(self.collections)
            self.collections.append(name)
        return found

    def find(self, coll: int, form: npt.NDArray[np.int8], sid: U64Array) -> I64Array:
        """The key of each (collection, form, sid), live or free; -1 if it was never assigned."""
        n = len(form)
        keys = np.full(n, -1, dtype=np.int64)
        if len(self.order) == 0 or n == 0:
            return keys
        pos = np.empty(n, dtype=np.int64)
        q_coll = np.full(n, coll, dtype=COLL_DTYPE)
        q_form = np.ascontiguousarray(form, dtype=np.int8)
        sid = np.ascontiguousarray(sid, dtype=np.uint64)
        gather.lookup_signals(
            self.order, self.coll, self.kind, _FORM_SHIFT, self.sid, self.sid_more, q_coll, q_form, sid, pos
        )
        inside = pos < len(self.order)
        cand = self.order[np.minimum(pos, len(self.order) - 1)].astype(np.int64)
        same = inside & (self.coll[cand] == coll) & ((self.kind[cand] >> np.int8(_FORM_SHIFT)) == q_form)
        found = self.sids_of(cand)
        same &= (found[:, 0] == sid[:, 0]) & (found[:, 1] == sid[:, 1])
        keys[same] = cand[same]
        return keys

    def sids_of(self, keys: I64Array) -> U64Array:
        """The 128-bit ids of ``keys`` (assigned keys), as an (n, 2) array."""
        nb = len(self.sid)
        if len(keys) == 0 or int(keys.max()) < nb:
            return self.sid[keys]
        out = np.empty((len(keys), 2), dtype=np.uint64)
        base = keys < nb
        out[base] = self.sid[keys[base]]
        out[~base] = self.sid_more[keys[~base] - nb]
        return out

    def live_type(self, keys: I64Array) -> npt.NDArray[np.int8]:
        """Type code of each key (0 = free)."""
        return (self.kind[keys] & np.int8(_TYPE_MASK)).astype(np.int8)

    def assign(
        self,
        coll: int,
        type_code: int,
        form: npt.NDArray[np.int8],
        sid: U64Array,
        text: dict[int, str],
        perm: npt.NDArray[np.int32],
    ) -> I64Array:
        """Keys for these signals (none live: the caller removed them): a signal's old key if it had one.
        ``perm`` is the batch sorted by id (:func:`sort_batch`)."""
        keys = self.find(coll, form, sid)
        new = np.flatnonzero(keys < 0)
        if len(new):
            start = self.size
            if start + len(new) > MAX_KEYS:
                raise MatchingError("the signal table is full (2^31 keys)")
            keys[new] = np.arange(start, start + len(new), dtype=np.int64)
            self._grow(start + len(new))
            self.size = start + len(new)
            self.coll[keys[new]] = coll
            self.sid_more[keys[new] - len(self.sid)] = sid[new]
            self.kind[keys[new]] = (form[new].astype(np.int8) << np.int8(_FORM_SHIFT)).astype(np.int8)
            sorted_new = keys[perm]
            self._insert_sorted(sorted_new[sorted_new >= start].astype(np.int32))
        self.kind[keys] = ((self.kind[keys] >> np.int8(_FORM_SHIFT)) << np.int8(_FORM_SHIFT)) | np.int8(type_code)
        for i, value in text.items():
            self.text[int(keys[i])] = value
        self.live += len(keys)
        return keys

    def assign_all(
        self,
        coll: int,
        type_code: int,
        form: npt.NDArray[np.int8],
        sid: U64Array,
        perm: npt.NDArray[np.int32],
        *,
        copy: bool = True,
    ) -> int:
        """Keys 0..n-1 for a first batch into an empty table, in batch order (no key array is made: the
        PDQ index takes row = key); ``perm`` (the batch sorted by id) becomes ``order`` and ``form`` becomes
        ``kind``. ``copy=False`` adopts ``sid`` too. Returns n."""
        if self.size:
            raise MatchingError("assign_all needs an empty signal table")
        n = len(form)
        cap = room(n)
        self.coll = memory.zeros(cap, COLL_DTYPE)  # type: ignore[assignment]
        self.coll[:n] = coll
        self.kind = memory.zeros(cap, np.int8)  # type: ignore[assignment]
        self.kind[:n] = (form << np.int8(_FORM_SHIFT)) | np.int8(type_code)
        self.sid = sid if not copy and sid.flags.c_contiguous and sid.flags.writeable else sid.copy()
        self.sid_more = np.zeros((0, 2), dtype=np.uint64)
        self._set_order(perm)
        self.size = self.live = n
        return n

    def free(self, keys: I64Array) -> None:
        """Mark live keys free (their signal was removed); their order and sid stay for a later re-add."""
        self.kind[keys] = (self.kind[keys] >> np.int8(_FORM_SHIFT)) << np.int8(_FORM_SHIFT)
        for k in keys.tolist():
            self.text.pop(k, None)
        self.live -= len(keys)

    def report(self, q: I64Array, keys: I64Array, dist: I64Array, limits: I64Array) -> Reported:
        """Of a search's hits (query ``q``, ``keys``, distances ``dist``, sorted by query, distance and key), the
        ones to report: the key still live and the distance within ``limits[collection]`` (-1: collection not
        asked). One numba call, which also writes UUID ids as text; then Python objects per hit only."""
        m = len(keys)
        out = np.empty((5, m), dtype=np.int64)
        out_sid = np.empty((m, 2), dtype=np.uint64)
        out_text = np.empty((m, 36), dtype=np.uint32)
        count, ties, others = gather.gather_hits(
            q, keys, dist, self.coll, self.kind, self.sid, self.sid_more, limits, _TYPE_MASK, _FORM_SHIFT,
            FORM_UUID, out, out_sid, out_text,
        )  # fmt: skip
        qs, dists, colls, forms, pos = out[:, :count].tolist()
        texts = out_text[:count].view("<U36").reshape(count).tolist()  # UUIDs: one str per hit, made in C
        if not others:  # the hub's ids: UUIDs only
            return Reported(qs, dists, colls, texts, ties > 0)
        ids: list[SignalId] = []
        for p, f, text, hi in zip(pos, forms, texts, out_sid[:count, 0].tolist(), strict=True):
            if f == FORM_UUID:
                ids.append(text)
            elif f == FORM_INT:
                ids.append(hi - 2**64 if hi >= 2**63 else hi)
            else:
                ids.append(self.text[int(keys[p])])
        return Reported(qs, dists, colls, ids, ties > 0)

    def _grow(self, need: int) -> None:
        """Room for keys up to ``need``: a copy of ``coll`` and ``kind`` (and ``sid_more``) only when their
        room is used up."""
        cap = len(self.coll)
        if need > cap:
            cap = room(max(need, cap + cap // 2))
            for name in ("coll", "kind"):
                old = getattr(self, name)
                grown = memory.zeros(cap, old.dtype)
                grown[: len(old)] = old
                setattr(self, name, grown)
        more = need - len(self.sid)
        if more > len(self.sid_more):
            grown = memory.zeros((room(max(more, len(self.sid_more) * 3 // 2)), 2), np.uint64)
            grown[: len(self.sid_more)] = self.sid_more
            self.sid_more = grown  # type: ignore[assignment]

    def _set_order(self, order: npt.NDArray[np.int32]) -> None:
        """``order`` as the table's order; its base array, when it has room after it, is grown into in place."""
        base = order.base if isinstance(order.base, np.ndarray) else None
        if base is not None and base.ndim == 1 and base.dtype == np.int32 and order.ctypes.data == base.ctypes.data:
            self._order_room = base
        else:
            self._order_room = order
        self.order = self._order_room[: len(order)]

    def _insert_sorted(self, new_keys: npt.NDArray[np.int32]) -> None:
        """Insert new keys (already written to the arrays, sorted by id) into ``order``, in place when it has
        room (one pass from the end), else into a new array with room."""
        if len(self.order) == 0:
            self._set_order(new_keys)
            return
        pos = np.empty(len(new_keys), dtype=np.int64)
        forms = (self.kind[new_keys] >> np.int8(_FORM_SHIFT)).astype(np.int8)
        sids = self.sids_of(new_keys.astype(np.int64))
        gather.lookup_signals(
            self.order, self.coll, self.kind, _FORM_SHIFT, self.sid, self.sid_more, self.coll[new_keys], forms,
            sids, pos,
        )  # fmt: skip
        n, total = len(self.order), len(self.order) + len(new_keys)
        if total > len(self._order_room):
            grown = memory.empty(room(total), np.int32)
            grown[:n] = self.order
            self._order_room = grown  # type: ignore[assignment]
        gather.insert_sorted(self._order_room, n, pos, new_keys)
        self.order = self._order_room[:total]

    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """The table's arrays trimmed to the keys assigned (what a save writes)."""
        sid = self.sid[: self.size]
        if self.size > len(self.sid):
            sid = np.concatenate([self.sid, self.sid_more[: self.size - len(self.sid)]])
        return {"coll": self.coll[: self.size], "kind": self.kind[: self.size], "sid": sid, "order": self.order}

    @classmethod
    def from_arrays(
        cls, collections: list[str], arrays: dict[str, npt.NDArray[np.generic]], text: dict[int, str]
    ) -> SignalTable:
        """A table from saved arrays (checked by the caller)."""
        table = cls()
        for name in collections:
            table.collection_index(name, create=True)
        if len(collections) > MAX_COLLECTIONS:
            raise MatchingError(f"a matcher holds at most {MAX_COLLECTIONS} collections")
        table.coll = np.ascontiguousarray(arrays["coll"], dtype=COLL_DTYPE)
        table.kind = np.ascontiguousarray(arrays["kind"], dtype=np.int8)
        table.sid = np.ascontiguousarray(arrays["sid"], dtype=np.uint64)
        table._set_order(np.ascontiguousarray(arrays["order"], dtype=np.int32))
        table.size = len(table.coll)
        table.live = int(np.count_nonzero(table.kind & np.int8(_TYPE_MASK)))
        table.text = text
        return table
