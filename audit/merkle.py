"""RFC 9162 Merkle trees: hashing, roots, inclusion and consistency proofs, compact ranges.

Proof generation here works on ranges of leaves and perfect subtrees keyed by (level, index), so the same
code serves an in-memory list of leaves and a database-backed log (see `audit.log`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from audit.errors import FormatError, ProofError, RootMismatchError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeKey = tuple[int, int]
"""A perfect subtree: (level L, index i) covers leaves [i * 2**L, (i + 1) * 2**L)."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_keys(begin: int, end: int) -> list[NodeKey]:
    """The perfect subtrees covering leaves [begin, end), left to right, as few as possible."""
    keys: list[NodeKey] = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        if begin:
            level = min(level, (begin & -begin).bit_length() - 1)
        keys.append((level, begin >> level))
        begin += 1 << level
    return keys


def fold_range(hashes: Sequence[bytes]) -> bytes:
    """Hash of a tree range from its perfect subtrees (left to right): a right fold, as in MTH."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes form the inclusion proof of `index` in a tree of `size`, leaf first."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
    ranges.reverse()
    return ranges


def consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes form the RFC 9162 consistency proof from size1 to size2."""
    if not 0 < size1 <= size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}")
    ranges: list[tuple[int, int]] = []
    lo, hi, complete = 0, size2, True
    while size1 - lo != hi - lo:
        mid = lo + _split(hi - lo)
        if size1 <= mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo, complete = mid, False
    if not complete:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def keys_for_ranges(ranges: Iterable[tuple[int, int]]) -> list[NodeKey]:
    """Every perfect subtree needed to hash the given ranges, without duplicates, in first-use order."""
    return list(dict.fromkeys(k for a, b in ranges for k in perfect_keys(a, b)))


def hash_ranges(ranges: Iterable[tuple[int, int]], nodes: Mapping[NodeKey, bytes]) -> list[bytes]:
    """Hash each range from stored perfect subtrees; a missing node is a `ProofError`."""
    out = []
    for a, b in ranges:
        try:
            out.append(fold_range([nodes[k] for k in perfect_keys(a, b)]))
        except KeyError as e:
            raise ProofError(f"node {e.args[0]} is missing from the store") from None
    return out


class _LeafNodes(Mapping[NodeKey, bytes]):
    """Perfect subtree hashes computed on demand from a list of leaf hashes (for small trees and tests)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self._leaves = leaves

    def __getitem__(self, key: NodeKey) -> bytes:
        level, index = key
        begin, end = index << level, (index + 1) << level
        if end > len(self._leaves):
            raise KeyError(key)
        return root_of(self._leaves[begin:end])

    def __iter__(self) -> Iterator[NodeKey]:  # never iterated; Mapping requires it
        return iter(())

    def __len__(self) -> int:
        return 0


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes, in O(n) hashes."""
    cr = CompactRange()
    cr.extend(leaves)
    return cr.root()


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Inclusion proof of leaf `index` from all leaf hashes (small trees; logs use `MerkleLog`)."""
    return hash_ranges(inclusion_ranges(index, len(leaves)), _LeafNodes(leaves))


def consistency_proof(size1: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Consistency proof from size1 to len(leaves) from a full list of leaf hashes."""
    if size1 == len(leaves):
        return []
    return hash_ranges(consistency_ranges(size1, len(leaves)), _LeafNodes(leaves))


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check an RFC 9162 inclusion proof (section 2.1.3.2); raise `ProofError` if it fails."""
    _check_hash(leaf, "leaf hash")
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        _check_hash(p, "proof hash")
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    if r != root:
        raise RootMismatchError("inclusion proof does not lead to the root")


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """Check an RFC 9162 consistency proof (section 2.1.4.2); raise `ProofError` if it fails.

    Equal sizes need an empty proof and equal roots (compared, not length-checked); size1 = 0 is an error.
    """
    if size1 <= 0 or size1 > size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}")
    if size1 == size2:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if root1 != root2:
            raise RootMismatchError("equal sizes with different roots")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    for p in proof:
        _check_hash(p, "proof hash")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is a node of the new tree
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != root1:
        raise RootMismatchError("consistency proof does not lead to the old root")
    if sr != root2:
        raise RootMismatchError("consistency proof does not lead to the new root")


def b64decode(value: Any, what: str) -> bytes:
    """Strict, canonical standard base64 (RFC 4648 section 4) to bytes, or `FormatError`."""
    if not isinstance(value, str):
        raise FormatError(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise FormatError(f"{what} is not valid base64") from e
    if b64encode(raw) != value:  # non-zero padding bits: one value, one encoding
        raise FormatError(f"{what} is not canonical base64")
    return raw


def b64encode(value: bytes) -> str:
    """Standard base64 with padding."""
    return base64.b64encode(value).decode("ascii")


@dataclass
class CompactRange:
    """The frontier of a tree of `size` leaves: the hashes of the perfect subtrees covering [0, size).

    Enough to compute the root and to keep appending without the old leaves; costs O(log size) memory.
    """

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.hashes) != self.size.bit_count():
            raise FormatError(f"a frontier of size {self.size} has {self.size.bit_count()} hashes")
        for h in self.hashes:
            if len(h) != HASH_SIZE:
                raise FormatError("frontier hashes must be 32 bytes")

    def keys(self) -> list[NodeKey]:
        """The (level, index) of each frontier hash."""
        return perfect_keys(0, self.size)

    def append(self, leaf: bytes) -> list[tuple[NodeKey, bytes]]:
        """Add one leaf hash; return every perfect subtree it completes (the leaf first), amortized O(1)."""
        if len(leaf) != HASH_SIZE:
            raise FormatError("leaf hashes must be 32 bytes")
        index = self.size
        new = [((0, index), leaf)]
        h, level = leaf, 0
        while (index >> level) & 1:
            h = node_hash(self.hashes.pop(), h)
            level += 1
            new.append(((level, index >> level), h))
        self.hashes.append(h)
        self.size += 1
        return new

    def extend(self, leaves: Iterable[bytes]) -> list[tuple[NodeKey, bytes]]:
        """Append several leaf hashes; return the completed perfect subtrees."""
        out: list[tuple[NodeKey, bytes]] = []
        for leaf in leaves:
            out.extend(self.append(leaf))
        return out

    def root(self) -> bytes:
        """The RFC 9162 root of the tree of `size` leaves."""
        return fold_range(self.hashes)

    def copy(self) -> CompactRange:
        """An independent copy."""
        return CompactRange(self.size, list(self.hashes))

    def to_dict(self) -> dict[str, Any]:
        """JSON form: {"size": n, "hashes": [base64, ...]} (largest subtree first)."""
        return {"size": self.size, "hashes": [b64encode(h) for h in self.hashes]}

    @classmethod
    def from_dict(cls, data: Any) -> CompactRange:
        """Parse the JSON form strictly; raise `FormatError` on anything else."""
        if not isinstance(data, dict) or set(data) != {"size", "hashes"}:
            raise FormatError("a frontier is an object with exactly 'size' and 'hashes'")
        size, hashes = data["size"], data["hashes"]
        if type(size) is not int or not isinstance(hashes, list):
            raise FormatError("frontier 'size' must be an integer and 'hashes' a list")
        return cls(size, [b64decode(h, "frontier hash") for h in hashes])
