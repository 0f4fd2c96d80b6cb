"""A storage-independent Merkle log: only perfect subtree hashes are stored, keyed by (level, index).

Appending touches O(1) amortized nodes per leaf (plus one O(log N) read of the frontier); a root, an
inclusion or a consistency proof at any size reads O(log N) nodes in one `get_many`.
No operation recomputes the tree.

A database store implements `NodeStore`; the pure functions below (`frontier_keys`, `nodes_to_store`,
`required_keys_for_root`, `required_keys_for_inclusion`, `required_keys_for_consistency` and the `assemble_*`
functions) are the whole algorithm, so a store-specific caller can also use them directly.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence

from audit.errors import ProofError
from audit.merkle import (
    CompactRange,
    NodeKey,
    consistency_ranges,
    fold_range,
    hash_ranges,
    inclusion_ranges,
    keys_for_ranges,
    perfect_keys,
)


class NodeStore(abc.ABC):
    """Where the perfect subtree hashes live (a dict, a SQL table...). Nodes are immutable once written."""

    @abc.abstractmethod
    def get_many(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        """Fetch the given nodes in one round trip; absent keys are simply missing from the result."""

    @abc.abstractmethod
    def put_many(self, items: Iterable[tuple[NodeKey, bytes]]) -> None:
        """Store nodes; rewriting a key with the same hash is allowed."""


class MemoryNodeStore(NodeStore):
    """A dict-backed `NodeStore` for tests, tools and benchmarks; counts the nodes it serves."""

    def __init__(self) -> None:
        self.nodes: dict[NodeKey, bytes] = {}
        self.reads = 0

    def get_many(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        self.reads += len(keys)
        return {k: self.nodes[k] for k in keys if k in self.nodes}

    def put_many(self, items: Iterable[tuple[NodeKey, bytes]]) -> None:
        self.nodes.update(items)


def frontier_keys(size: int) -> list[NodeKey]:
    """Keys of the compact range of a tree of `size` leaves (what `append` reads first)."""
    return perfect_keys(0, size)


def frontier_from_nodes(size: int, nodes: Mapping[NodeKey, bytes]) -> CompactRange:
    """Build the compact range at `size` from the nodes named by `frontier_keys`."""
    try:
        return CompactRange(size, [nodes[k] for k in frontier_keys(size)])
    except KeyError as e:
        raise ProofError(f"node {e.args[0]} is missing from the store") from None


def nodes_to_store(frontier: CompactRange, leaves: Iterable[bytes]) -> list[tuple[NodeKey, bytes]]:
    """Append leaf hashes to `frontier` (in place) and return every node to write: amortized O(1) per leaf."""
    return frontier.extend(leaves)


def required_keys_for_root(size: int) -> list[NodeKey]:
    """Keys needed for the root at `size`: O(log size)."""
    return perfect_keys(0, size)


def assemble_root(size: int, nodes: Mapping[NodeKey, bytes]) -> bytes:
    """The root at `size` from the nodes named by `required_keys_for_root`."""
    return hash_ranges([(0, size)], nodes)[0] if size else fold_range([])


def required_keys_for_inclusion(index: int, size: int) -> list[NodeKey]:
    """Keys needed for the inclusion proof of leaf `index` in a tree of `size`: O(log size)."""
    return keys_for_ranges(inclusion_ranges(index, size))


def assemble_inclusion(index: int, size: int, nodes: Mapping[NodeKey, bytes]) -> list[bytes]:
    """The inclusion proof from the nodes named by `required_keys_for_inclusion`."""
    return hash_ranges(inclusion_ranges(index, size), nodes)


def required_keys_for_consistency(size1: int, size2: int) -> list[NodeKey]:
    """Keys needed for the consistency proof from size1 to size2 (0 < size1 <= size2): O(log size2)."""
    return [] if size1 == size2 and size1 > 0 else keys_for_ranges(consistency_ranges(size1, size2))


def assemble_consistency(size1: int, size2: int, nodes: Mapping[NodeKey, bytes]) -> list[bytes]:
    """The consistency proof from the nodes named by `required_keys_for_consistency`."""
    if size1 == size2 and size1 > 0:
        return []
    return hash_ranges(consistency_ranges(size1, size2), nodes)


class MerkleLog:
    """An append-only RFC 9162 log over a `NodeStore`; `size` is the number of leaves appended so far."""

    def __init__(self, store: NodeStore, size: int = 0) -> None:
        self.store = store
        self.size = size

    def _fetch(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        return self.store.get_many(keys) if keys else {}

    def frontier(self, size: int | None = None) -> CompactRange:
        """The compact range at `size` (default: the current size)."""
        size = self.size if size is None else size
        self._check_size(size)
        return frontier_from_nodes(size, self._fetch(frontier_keys(size)))

    def append(self, leaves: Sequence[bytes]) -> int:
        """Append leaf hashes, write the nodes they complete in one `put_many`, return the new size."""
        frontier = self.frontier()
        self.store.put_many(nodes_to_store(frontier, leaves))
        self.size = frontier.size
        return self.size

    def root(self, size: int | None = None) -> bytes:
        """The root at any `size` <= the current size."""
        size = self.size if size is None else size
        self._check_size(size)
        return assemble_root(size, self._fetch(required_keys_for_root(size)))

    def leaf(self, index: int) -> bytes:
        """The stored leaf hash at `index`."""
        self._check_size(index + 1)
        return hash_ranges([(index, index + 1)], self._fetch([(0, index)]))[0]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Inclusion proof of leaf `index` in the tree of `size` leaves."""
        size = self.size if size is None else size
        self._check_size(size)
        return assemble_inclusion(index, size, self._fetch(required_keys_for_inclusion(index, size)))

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """Consistency proof from size1 to size2 (default: the current size)."""
        size2 = self.size if size2 is None else size2
        self._check_size(size2)
        keys = required_keys_for_consistency(size1, size2)
        return assemble_consistency(size1, size2, self._fetch(keys))

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ProofError(f"size {size} is outside a log of {self.size} leaves")
