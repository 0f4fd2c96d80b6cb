"""Key maps (data-aware chunk bits, docs/adr/0012): exact recall at every threshold on structured hashes, the
choice falls back to natural order on uniform hashes, and a map survives merges and saves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from partners.matching import pdq_index
from partners.matching.errors import IndexFormatError, MatchingError
from partners.matching.kernels import build, common
from partners.matching.pdq_index import KeyMap, Layout, PdqIndex, PdqTable, _collisions
from partners.matching.storage import load_pdq, save_pdq
from tests.matching.conftest import brute_force, flip_bits, random_words
from tests.matching.test_pdq_index import as_dicts


def structured(rng: np.random.Generator, n: int, rank: int = 16) -> np.ndarray:
    """Hashes like the benchmark's structured set: bits = sign of a random projection of a low-dimensional
    Gaussian plus noise (correlated bits, unevenly filled chunks), a fifth of them near-duplicates."""
    proj = rng.standard_normal((rank, 256))
    x = rng.standard_normal((n, rank)) @ proj + 0.7 * rng.standard_normal((n, 256))
    words = np.packbits(x > 0, axis=1, bitorder="little").view(np.uint64).reshape(n, 4).copy()
    for i in range(0, n // 5, 4):  # families of four: a picture and three edits of it
        for j in range(1, 4):
            words[i + j] = flip_bits(rng, words[i], int(rng.integers(0, 25)))
    return words


def near_queries(rng: np.random.Generator, stored: np.ndarray, n: int) -> np.ndarray:
    """Queries 0..max distance from stored rows (every threshold has hits), and fresh draws."""
    rows = rng.choice(len(stored), size=n, replace=False)
    near = [flip_bits(rng, stored[r], k % 40) for k, r in enumerate(rows)]
    return np.concatenate([np.array(near), structured(rng, n // 2)])


def test_a_key_map_spreads_correlated_bits_and_keeps_recall_exact_at_every_threshold(
    rng: np.random.Generator,
) -> None:
    stored = structured(rng, 30_000)
    queries = near_queries(rng, stored, 40)
    layout = Layout.for_size(len(stored))
    keymap = KeyMap.choose(stored, layout)
    assert keymap is not None, "structured hashes must get a key map"
    assert _collisions(stored, layout, keymap) < 0.8 * _collisions(stored, layout, None)
    assert sorted(keymap.order.tolist()) == list(range(256))
    table = PdqTable.build(stored, layout, keymap)
    dead = np.zeros(len(stored), dtype=np.uint8)
    for threshold in [*range(32), 40, 52, 64]:
        got = as_dicts(*table.search(queries, threshold, dead, "mih"), len(queries))
        assert got == brute_force(stored, queries, threshold), f"threshold {threshold}"


def test_uniform_hashes_keep_natural_order(rng: np.random.Generator) -> None:
    stored = random_words(rng, 200_000)
    assert KeyMap.choose(stored, Layout.for_size(len(stored))) is None


@pytest.mark.parametrize("order", [np.arange(255), np.zeros(256, dtype=np.int64)], ids=["short", "repeated"])
def test_a_key_map_order_must_be_a_permutation(order: np.ndarray) -> None:
    with pytest.raises(MatchingError):
        KeyMap.from_order(order, Layout(23, 11))


def test_a_key_map_extracts_its_chunks_bits_in_ascending_order(rng: np.random.Generator) -> None:
    keymap = KeyMap.from_order(rng.permutation(256), Layout(23, 11))
    hashes = random_words(rng, 5_000)
    keys = np.empty(len(hashes), dtype=np.int64)
    for c in range(11):
        keymap.chunk_keys(hashes, c, keys)
        bits = keymap.order[c * 23 : (c + 1) * 23]
        assert list(bits) == sorted(bits)
        expected = np.zeros(len(hashes), dtype=np.int64)
        for k, bit in enumerate(bits.tolist()):
            expected |= ((hashes[:, bit // 64] >> np.uint64(bit % 64)) & np.uint64(1)).astype(np.int64) << k
        assert np.array_equal(keys, expected)
    identity = KeyMap.from_order(np.arange(256), Layout(23, 11))
    natural = np.empty(len(hashes), dtype=np.int64)
    for c in range(11):
        identity.chunk_keys(hashes, c, keys)
        build.chunk_keys(hashes, c * 23, 23, natural)
        assert np.array_equal(keys, natural)


def test_the_software_pext_agrees_with_a_bit_by_bit_extraction(rng: np.random.Generator) -> None:
    """Used where the CPU has no fast PEXT (the instruction itself is checked above where it has)."""
    pairs = rng.integers(0, 2**64, size=(2_000, 2), dtype=np.uint64).tolist()
    for x, mask in [*pairs, (2**64 - 1, 2**64 - 1), (2**64 - 1, 0x0F0F_00FF_8000_0001)]:
        want, k = 0, 0
        for b in range(64):
            if mask >> b & 1:
                want |= (x >> b & 1) << k
                k += 1
        assert int(common.soft_pext(np.uint64(x), np.uint64(mask))) == want
    assert int(common.soft_pext(np.uint64(5), np.uint64(0))) == 0


def test_an_index_keeps_its_key_map_through_deltas_merges_and_a_save(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(pdq_index, "KEYMAP_MIN", 1_000)
    stored = structured(rng, 24_000)
    queries = near_queries(rng, stored, 30)
    index = PdqIndex.build(stored[:20_000], background_merge=False, merge_at=1_000)
    assert index._state.main.table.keymap is not None
    index.apply_delta(stored[20_000:], np.arange(20_000, 24_000), np.arange(0, 20_000, 11))
    assert index.last_merge is not None and index.last_merge[0] == "append"
    assert index._state.main.table.keymap is not None
    live = np.setdiff1d(np.arange(24_000), np.arange(0, 20_000, 11))
    for threshold in (0, 9, 22, 31, 52):
        expected = [{int(live[r]): d for r, d in e.items()} for e in brute_force(stored[live], queries, threshold)]
        for mode in ("mih", "scan"):
            hits = index.search(queries, threshold, mode=mode)
            assert as_dicts(hits.query, hits.ids, hits.distances, len(queries)) == expected, (threshold, mode)
    save_pdq(index, tmp_path / "pdq")  # the tables as they are, with their key map's order in the manifest
    manifest = json.loads((tmp_path / "pdq" / "manifest.json").read_text())
    assert manifest["key_order"] == index._state.main.table.keymap.order.tolist()
    for mmap in (True, False):
        loaded = load_pdq(tmp_path / "pdq", mmap=mmap)
        assert np.array_equal(loaded._state.main.table.keymap.order, index._state.main.table.keymap.order)
        for threshold in (0, 22, 31):
            got, want = loaded.search(queries, threshold), index.search(queries, threshold)
            assert all(np.array_equal(a, b) for a, b in zip(vars(got).values(), vars(want).values(), strict=True))


@pytest.mark.parametrize("order", [list(range(255)), [0] * 256, "natural", [True] * 256])
def test_a_saved_key_order_that_is_not_a_permutation_is_refused(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, order: object
) -> None:
    monkeypatch.setattr(pdq_index, "KEYMAP_MIN", 1_000)
    save_pdq(PdqIndex.build(structured(rng, 4_000), background_merge=False), tmp_path / "pdq")
    path = tmp_path / "pdq" / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["key_order"] is not None
    path.write_text(json.dumps(manifest | {"key_order": order}))
    with pytest.raises(IndexFormatError, match="malformed index manifest"):
        load_pdq(tmp_path / "pdq")


def test_a_version_1_save_loads_in_natural_bit_order(rng: np.random.Generator, tmp_path: Path) -> None:
    stored = structured(rng, 4_000)
    index = PdqIndex.build(stored, background_merge=False)
    assert index._state.main.table.keymap is None  # below KEYMAP_MIN
    save_pdq(index, tmp_path / "pdq")
    path = tmp_path / "pdq" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["key_order"]
    path.write_text(json.dumps(manifest | {"version": 1}))
    loaded = load_pdq(tmp_path / "pdq")
    queries = near_queries(rng, stored, 10)
    got, want = loaded.search(queries, 31), index.search(queries, 31)
    assert all(np.array_equal(a, b) for a, b in zip(vars(got).values(), vars(want).values(), strict=True))
