"""Merkle log figures: append 1,000,000 leaves through the log model, then time proofs (prints only)."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable

from audit import merkle
from audit.log import MemoryNodeStore, MerkleLog

N = 1_000_000
BATCH = 1_000
PROOFS = 2_000


class CountingHash:
    """Counts SHA-256 calls made by the Merkle code."""

    def __init__(self) -> None:
        self.calls = 0
        self._sha = hashlib.sha256

    def __call__(self, data: bytes = b"") -> object:
        self.calls += 1
        return self._sha(data)


def mean_us(fn: Callable[[int], object], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    leaves = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(N)]
    store = MemoryNodeStore()
    log = MerkleLog(store)
    counter = CountingHash()
    merkle.hashlib.sha256 = counter  # type: ignore[assignment]  # count node hashes only while appending
    start = time.perf_counter()
    for i in range(0, N, BATCH):
        log.append(leaves[i : i + BATCH])
    elapsed = time.perf_counter() - start
    merkle.hashlib.sha256 = counter._sha  # type: ignore[assignment]
    root = log.root()
    print(f"append {N:,} leaves in batches of {BATCH}: {elapsed:.2f} s, {elapsed / N * 1e6:.2f} µs/leaf")
    print(f"node hashes per leaf: {counter.calls / N:.3f}; stored nodes: {len(store.nodes):,}")
    print(f"root: {root.hex()}")

    rng = random.Random(1)
    idx = [rng.randrange(N) for _ in range(PROOFS)]
    sizes = [rng.randrange(1, N) for _ in range(PROOFS)]
    store.reads = 0
    incl = [log.inclusion_proof(i) for i in idx]
    print(
        f"inclusion proof generation: {mean_us(lambda k: log.inclusion_proof(idx[k]), PROOFS):.1f} µs, "
        f"{store.reads / PROOFS:.1f} nodes read per proof"
    )
    verify_incl = mean_us(lambda k: merkle.verify_inclusion(idx[k], N, leaves[idx[k]], incl[k], root), PROOFS)
    print(f"inclusion proof verification: {verify_incl:.1f} µs")
    store.reads = 0
    cons = [log.consistency_proof(s) for s in sizes]
    roots = [log.root(s) for s in sizes]
    print(
        f"consistency proof generation: {mean_us(lambda k: log.consistency_proof(sizes[k]), PROOFS):.1f} µs, "
        f"{store.reads / (2 * PROOFS):.1f} nodes read per proof or root"
    )
    print(
        f"consistency proof verification: "
        f"{mean_us(lambda k: merkle.verify_consistency(sizes[k], N, roots[k], root, cons[k]), PROOFS):.1f} µs"
    )


if __name__ == "__main__":
    main()
