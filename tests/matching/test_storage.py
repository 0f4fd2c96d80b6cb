"""Saving and loading indexes: round trip, memory maps, and corruption detected with a clear error."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from partners.matching.errors import IndexFormatError
from partners.matching.exact_index import ExactIndex
from partners.matching.index import PdqIndex, load_pdq, save_pdq
from partners.matching.signals import SignalType
from tests.matching.conftest import flip_bits, random_words


@pytest.fixture
def saved(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, PdqIndex, np.ndarray]:
    stored = random_words(rng, 3000)
    index = PdqIndex.build(stored, np.arange(3000) * 2)
    index.add(random_words(rng, 100), np.arange(10_000, 10_100))
    index.remove([0, 2, 10_000])
    queries = np.stack([flip_bits(rng, stored[i], 10) for i in range(20)])
    save_pdq(index, tmp_path / "pdq")
    return tmp_path / "pdq", index, queries


@pytest.mark.parametrize("mmap", [True, False], ids=["mmap", "in-memory"])
def test_round_trip_answers_the_same(saved: tuple[Path, PdqIndex, np.ndarray], mmap: bool) -> None:
    path, index, queries = saved
    loaded = load_pdq(path, mmap=mmap)
    assert len(loaded) == len(index) == 3000 + 100 - 3
    for threshold in (31, 52):
        a, b = index.search(queries, threshold), loaded.search(queries, threshold)
        assert a.ids.tolist() == b.ids.tolist() and a.distances.tolist() == b.distances.tolist()
    assert not np.isin([0, 2, 10_000], b.ids).any()
    loaded.add(queries[:1], [99_999])  # a memory-mapped index still takes deltas
    assert loaded.search(queries[:1], 0).ids.tolist() == [99_999]


def _manifest(path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((path / "manifest.json").read_text())


def test_flipped_byte_in_hashes_is_detected(saved: tuple[Path, PdqIndex, np.ndarray]) -> None:
    path = saved[0]
    data = bytearray((path / "hashes.npy").read_bytes())
    data[-5] ^= 0x01
    (path / "hashes.npy").write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match=r"hashes\.npy: SHA-256"):
        load_pdq(path)


def test_truncated_table_is_detected(saved: tuple[Path, PdqIndex, np.ndarray]) -> None:
    path = saved[0]
    data = (path / "rows.npy").read_bytes()
    (path / "rows.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFormatError, match=r"rows\.npy"):
        load_pdq(path)


def test_mismatched_files_are_detected(tmp_path: Path, saved: tuple[Path, PdqIndex, np.ndarray]) -> None:
    path = saved[0]
    other = PdqIndex.build(random_words(np.random.default_rng(1), 3097), np.arange(3097))
    save_pdq(other, tmp_path / "other")
    (path / "ids.npy").write_bytes((tmp_path / "other" / "ids.npy").read_bytes())
    with pytest.raises(IndexFormatError, match=r"ids\.npy"):
        load_pdq(path)


def test_bucket_starts_out_of_order_are_refused_even_with_a_matching_digest(
    saved: tuple[Path, PdqIndex, np.ndarray],
) -> None:
    """A replaced index directory (its manifest rewritten to match) must not make a kernel read out of range:
    bucket starts that do not ascend are refused before they are packed."""
    path = saved[0]
    offs = np.load(path / "offs.npy")
    offs[5] = offs[-1] + 1_000_000  # past every row, then back down
    np.save(path / "offs.npy", offs)
    manifest = _manifest(path)
    manifest["files"]["offs.npy"]["sha256"] = hashlib.sha256(offs.tobytes()).hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="not ascending"):
        load_pdq(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(version=3), "version"),
        (lambda m: m.update(format="something-else"), "does not hold"),
        (lambda m: m.pop("files"), "malformed"),
        (lambda m: m.update(count=m["count"] + 1), "shape"),
    ],
    ids=["newer version", "other format", "no files", "wrong count"],
)
def test_bad_manifest_is_detected(saved: tuple[Path, PdqIndex, np.ndarray], edit, message: str) -> None:  # type: ignore[no-untyped-def]
    path = saved[0]
    manifest = _manifest(path)
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match=message):
        load_pdq(path)


def test_missing_or_garbled_manifest(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="manifest"):
        load_pdq(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match="manifest"):
        load_pdq(tmp_path)


def test_exact_index_round_trip_and_corruption(tmp_path: Path) -> None:
    index = ExactIndex(SignalType.MD5)
    index.add(["0" * 32, "a" * 32], [1, 2])
    index.save(tmp_path / "md5")
    loaded = ExactIndex.load(tmp_path / "md5")
    assert loaded.search(["A" * 32, "0" * 32, "1" * 32]) == [[2], [1], []]
    np.save(tmp_path / "md5" / "digests.npy", np.zeros((2, 32), dtype=np.uint8))
    with pytest.raises(IndexFormatError):
        ExactIndex.load(tmp_path / "md5")
