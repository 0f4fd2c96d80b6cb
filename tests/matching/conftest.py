"""Shared helpers for the matcher tests: random PDQ words, planted neighbours, a numpy brute-force oracle."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

U64 = npt.NDArray[np.uint64]


def random_words(rng: np.random.Generator, n: int) -> U64:
    """Uniform random 256-bit hashes as (n, 4) uint64."""
    return rng.integers(0, 2**64, size=(n, 4), dtype=np.uint64, endpoint=False)


def flip_bits(rng: np.random.Generator, words: U64, k: int) -> U64:
    """A copy of one hash with exactly ``k`` distinct random bits flipped."""
    out = words.copy().reshape(4)
    for bit in rng.choice(256, size=k, replace=False):
        out[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
    return out


def brute_force(stored: U64, queries: U64, threshold: int) -> list[dict[int, int]]:
    """For each query, {row: distance} of every stored row within the threshold (the oracle)."""
    out = []
    for q in queries:
        dist = np.bitwise_count(stored ^ q).sum(axis=1)
        rows = np.flatnonzero(dist <= threshold)
        out.append({int(r): int(dist[r]) for r in rows})
    return out


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240607)
