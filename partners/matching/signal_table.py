"""The matcher's table of signals: int64 key -> (collection, signal id, type), in numpy arrays, no dicts.

A Python dict of 10M signals costs well over a gigabyte; this table costs 23 bytes per key:

- ``coll`` (int16): index of the collection in ``collections`` (at most 32,767 collections);
- ``kind`` (int8): signal type code (0 = free key) plus the id's form in the high bits;
- ``sid`` ((n, 2) uint64): the signal id in 128 bits. The hub issues UUIDs (``str(uuid.uuid4())``), whose
  128 bits are stored as is; integer ids are stored as their int64 value. Any other string id is kept as a
  Python string in ``text`` (compact only for the forms the hub uses) and stored here as a 128-bit BLAKE2b
  digest, which is what lookups compare;
- ``order`` (int32): every key ever assigned, sorted by (collection, form, sid), for lookups by binary search
  (``_kernels.lookup_signals``). Removed keys stay in it (marked free) and are reused when the same signal
  comes back; a new signal gets a new key, so the arrays grow by 23 bytes per distinct signal ever added.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from partners.matching import _kernels
from partners.matching.errors import DuplicateIdError, MatchingError
from partners.matching.signals import I64Array, SignalType

SignalId = int | str

TYPE_CODES = {SignalType.PDQ: 1, SignalType.MD5: 2, SignalType.SHA256: 3}
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


def sort_batch(form: npt.NDArray[np.int8], sid: U64Array) -> npt.NDArray[np.int32]:
    """Positions of a batch of ids sorted by (form, sid), or :class:`DuplicateIdError` if an id repeats.

    A radix sort in numba over an int32 permutation (``_kernels.sort_ids``): at 10M UUIDs about 1.7 s (2-core EPYC) and
    80 MB (the permutation and its scratch), where ``np.unique(axis=0)`` of an (n, 3) array took seconds and
    gigabytes. The result is also the batch's slice of the table's ``order``.
    """
    n = len(form)
    if n >= MAX_KEYS:
        raise MatchingError("the signal table is full (2^31 keys)")
    perm = np.arange(n, dtype=np.int32)
    scratch = np.empty(n if n > 32 else 0, dtype=np.int32)
    if _kernels.sort_ids(form, sid, perm, scratch) >= 0:
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


def _uuid_strings(sids: U64Array) -> list[str]:
    """Canonical UUID strings of (n, 2) uint64 words, as ``str(uuid.UUID(int=...))`` prints them: slices of
    one hex string of all their bytes (half the cost of formatting each id, for a query's tens of hits)."""
    h = np.ascontiguousarray(sids, dtype=">u8").tobytes().hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, len(h), 32)
    ]


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


class SignalTable:
    """Keys and what they stand for; see the module docstring for the layout."""

    def __init__(self) -> None:
        self.collections: list[str] = []
        self._coll_index: dict[str, int] = {}
        self.coll = np.zeros(0, dtype=COLL_DTYPE)
        self.kind = np.zeros(0, dtype=np.int8)
        self.sid = np.zeros((0, 2), dtype=np.uint64)
        self.order = np.zeros(0, dtype=np.int32)
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
        _kernels.lookup_signals(self.order, self.coll, self.kind, _FORM_SHIFT, self.sid, q_coll, q_form, sid, pos)
        inside = pos < len(self.order)
        cand = self.order[np.minimum(pos, len(self.order) - 1)].astype(np.int64)
        same = inside & (self.coll[cand] == coll) & ((self.kind[cand] >> np.int8(_FORM_SHIFT)) == q_form)
        same &= (self.sid[cand, 0] == sid[:, 0]) & (self.sid[cand, 1] == sid[:, 1])
        keys[same] = cand[same]
        return keys

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
            self.sid[keys[new]] = sid[new]
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
        ``kind`` (both taken over). ``copy=False`` adopts ``sid`` too. Returns n."""
        if self.size:
            raise MatchingError("assign_all needs an empty signal table")
        n = len(form)
        self.coll = np.full(n, coll, dtype=COLL_DTYPE)
        self.kind = form.astype(np.int8, copy=False)  # taken over: the matcher made ``form`` for this call
        self.kind <<= np.int8(_FORM_SHIFT)
        self.kind |= np.int8(type_code)
        self.sid = sid if not copy and sid.flags.c_contiguous and sid.flags.writeable else sid.copy()
        self.order = perm
        self.size = self.live = n
        return n

    def free(self, keys: I64Array) -> None:
        """Mark live keys free (their signal was removed); their order and sid stay for a later re-add."""
        self.kind[keys] = (self.kind[keys] >> np.int8(_FORM_SHIFT)) << np.int8(_FORM_SHIFT)
        for k in keys.tolist():
            self.text.pop(k, None)
        self.live -= len(keys)

    def report(self, keys: I64Array, dist: I64Array, limits: I64Array) -> tuple[list[int], list[int], list[SignalId]]:
        """Of a search's hits (``keys`` with distances ``dist``), the ones to report: the key still live and the
        distance within ``limits[collection]`` (-1: collection not asked). Returns their positions in the hits,
        collection indexes and signal ids, as lists (one numba call, then Python objects per hit only)."""
        m = len(keys)
        out = np.empty((3, m), dtype=np.int64)
        out_sid = np.empty((m, 2), dtype=np.uint64)
        count = _kernels.gather_hits(
            keys, dist, self.coll, self.kind, self.sid, limits, _TYPE_MASK, _FORM_SHIFT, out, out_sid
        )
        pos, colls, forms = out[:, :count].tolist()
        if FORM_INT not in forms and FORM_TEXT not in forms:  # the hub's ids: UUIDs only
            return pos, colls, _uuid_strings(out_sid[:count])  # type: ignore[return-value]
        ids: list[SignalId] = []
        for p, f, (hi, lo) in zip(pos, forms, out_sid[:count].tolist(), strict=True):
            if f == FORM_UUID:
                ids.append(str(uuid.UUID(int=(hi << 64) | lo)))
            elif f == FORM_INT:
                ids.append(hi - 2**64 if hi >= 2**63 else hi)
            else:
                ids.append(self.text[int(keys[p])])
        return pos, colls, ids

    def _grow(self, need: int) -> None:
        cap = len(self.coll)
        if need <= cap:
            return
        cap = max(need, cap + cap // 2, 1024)
        for name in ("coll", "kind", "sid"):
            old = getattr(self, name)
            grown = np.zeros((cap, *old.shape[1:]), dtype=old.dtype)
            grown[: len(old)] = old
            setattr(self, name, grown)

    def _insert_sorted(self, new_keys: npt.NDArray[np.int32]) -> None:
        """Insert new keys (already written to the arrays, sorted by id) into ``order`` in one pass."""
        if len(self.order) == 0:
            self.order = new_keys
            return
        pos = np.empty(len(new_keys), dtype=np.int64)
        forms = (self.kind[new_keys] >> np.int8(_FORM_SHIFT)).astype(np.int8)
        sids = self.sid[new_keys]
        _kernels.lookup_signals(
            self.order, self.coll, self.kind, _FORM_SHIFT, self.sid, self.coll[new_keys], forms, sids, pos
        )
        out = np.empty(len(self.order) + len(new_keys), dtype=np.int32)
        _kernels.insert_sorted(self.order, pos, new_keys, out)
        self.order = out

    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """The table's arrays trimmed to the keys assigned (what a save writes)."""
        return {
            "coll": self.coll[: self.size],
            "kind": self.kind[: self.size],
            "sid": self.sid[: self.size],
            "order": self.order,
        }

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
        table.order = np.ascontiguousarray(arrays["order"], dtype=np.int32)
        table.size = len(table.coll)
        table.live = int(np.count_nonzero(table.kind & np.int8(_TYPE_MASK)))
        table.text = text
        return table
