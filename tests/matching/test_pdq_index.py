"""PDQ index: exact recall against brute force at every distance around the threshold, removes, deltas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from partners.matching.errors import DuplicateIdError, InvalidThresholdError
from partners.matching.kernels import build, scan
from partners.matching.pdq_index import Layout, PdqIndex, PdqTable
from partners.matching.storage import load_pdq, save_pdq
from tests.matching.conftest import brute_force, flip_bits, random_words

THRESHOLDS = [0, 1, 5, 10, 22, 31, 32, 40, 52, 64]


def planted(rng: np.random.Generator, n_random: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Random stored hashes plus, around each query, one stored neighbour at every distance 0..64."""
    queries = random_words(rng, n_queries)
    neighbours = [flip_bits(rng, q, k) for q in queries for k in range(65)]
    stored = np.concatenate([random_words(rng, n_random), np.array(neighbours)])
    return stored[rng.permutation(len(stored))], queries


def as_dicts(q: np.ndarray, rows: np.ndarray, dist: np.ndarray, n: int) -> list[dict[int, int]]:
    out: list[dict[int, int]] = [{} for _ in range(n)]
    for qi, row, d in zip(q.tolist(), rows.tolist(), dist.tolist(), strict=True):
        assert row not in out[qi], "a row was reported twice"
        out[qi][row] = d
    return out


@pytest.mark.parametrize(
    "layout",
    [Layout(8, 32), Layout(16, 16), Layout(13, 19), Layout(20, 12), Layout(23, 11)],
    ids=["32x8", "16x16", "19x13", "12x20", "11x23"],
)
def test_table_recall_is_exact_at_every_threshold(rng: np.random.Generator, layout: Layout) -> None:
    stored, queries = planted(rng, 3000, 6)
    table = PdqTable.build(np.ascontiguousarray(stored), layout)
    dead = np.zeros(len(stored), dtype=np.uint8)
    for threshold in THRESHOLDS:
        expected = brute_force(stored, queries, threshold)
        for mode in ("mih", "scan"):
            got = as_dicts(*table.search(queries, threshold, dead, mode), len(queries))  # type: ignore[arg-type]
            assert got == expected, f"threshold {threshold}, mode {mode}"


def test_index_search_sorted_and_exact(rng: np.random.Generator) -> None:
    stored, queries = planted(rng, 20_000, 10)
    ids = np.arange(len(stored), dtype=np.int64) * 7 + 3
    index = PdqIndex.build(stored, ids)
    for threshold in (31, 52):
        expected = brute_force(stored, queries, threshold)
        hits = index.search(queries, threshold)
        for qi, (got_ids, got_dist) in enumerate(hits.per_query(len(queries))):
            assert dict(zip(((got_ids - 3) // 7).tolist(), got_dist.tolist(), strict=True)) == expected[qi]
            assert list(got_dist) == sorted(got_dist)
            # the planted neighbours give exactly one hit per distance 0..threshold
            assert sorted(set(got_dist.tolist())) == list(range(threshold + 1))


@pytest.mark.parametrize("bad", [-1, 65, 256, 3.5, "31", True], ids=str)
def test_threshold_out_of_range_is_a_value_error(rng: np.random.Generator, bad: object) -> None:
    index = PdqIndex.build(random_words(rng, 10), np.arange(10))
    with pytest.raises(ValueError):
        index.search(random_words(rng, 1), bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidThresholdError):
        index.search(random_words(rng, 1), bad)  # type: ignore[arg-type]


def test_hex_queries_and_empty_index(rng: np.random.Generator) -> None:
    index = PdqIndex()
    assert len(index.search(["0" * 64], 31).ids) == 0
    index.add(["f" * 64, "0" * 63 + "1"], [1, 2])
    hits = index.search(["0" * 64], 31)
    assert hits.ids.tolist() == [2] and hits.distances.tolist() == [1]


def test_removed_ids_are_never_returned_and_re_add_works(rng: np.random.Generator) -> None:
    stored = random_words(rng, 5000)
    index = PdqIndex.build(stored, np.arange(5000))
    index.add(random_words(rng, 50), np.arange(10_000, 10_050))  # a side table too
    assert index.remove([0, 1, 10_000, 999_999]) == 3
    hits = index.search(np.concatenate([stored[:2], index.live()[0][-50:-49]]), 64)
    assert not {0, 1, 10_000} & set(hits.ids.tolist())
    assert not index.contains([0, 1, 10_000]).any()
    index.add(stored[:1], [0])
    assert index.search(stored[:1], 0).ids.tolist() == [0]
    index.merge()
    assert index.search(stored[:2], 0).ids.tolist() == [0]
    assert len(index) == 5000 + 50 - 3 + 1


def test_add_replaces_a_live_id(rng: np.random.Generator) -> None:
    a, b = random_words(rng, 2)
    index = PdqIndex.build(a[None, :], [5])
    index.add(b[None, :], [5])
    assert index.search(a[None, :], 31).ids.tolist() == []
    assert index.search(b[None, :], 0).ids.tolist() == [5]
    assert len(index) == 1
    with pytest.raises(DuplicateIdError):
        index.add(np.stack([a, b]), [6, 6])


def test_deltas_then_merge_answer_like_a_fresh_build(rng: np.random.Generator) -> None:
    stored, queries = planted(rng, 10_000, 8)
    ids = np.arange(len(stored), dtype=np.int64)
    index = PdqIndex.build(stored[:6000], ids[:6000], merge_at=10**9)
    live = dict(zip(ids[:6000].tolist(), range(6000), strict=True))
    for start in range(6000, len(stored), 1000):  # deltas: 1,000 adds and 300 removes each
        stop = min(start + 1000, len(stored))
        gone = rng.choice(list(live), size=300, replace=False)
        index.apply_delta(stored[start:stop], ids[start:stop], gone)
        for g in gone.tolist():
            del live[g]
        live.update({i: i for i in range(start, stop)})

    def answers(ix: PdqIndex) -> list[list[tuple[int, int]]]:
        return [
            list(zip(i.tolist(), d.tolist(), strict=True)) for i, d in ix.search(queries, 40).per_query(len(queries))
        ]

    keep = np.array(sorted(live), dtype=np.int64)
    fresh = PdqIndex.build(stored[keep], keep)
    before = answers(index)
    assert before == answers(fresh)
    index.merge()
    assert answers(index) == before
    assert len(index) == len(keep)


def test_background_merge_keeps_answers_correct(rng: np.random.Generator) -> None:
    stored = random_words(rng, 4000)
    index = PdqIndex.build(stored[:2000], np.arange(2000), merge_at=500, background_merge=True)
    for start in range(2000, 4000, 250):
        index.add(stored[start : start + 250], np.arange(start, start + 250))
        index.remove([start - 1000])
        hits = index.search(stored[start - 1000 : start + 250], 0)
        assert sorted(hits.ids.tolist()) == list(range(start - 999, start + 250))
    index.wait_for_merge()
    index.merge()
    assert index.search(stored, 0).ids.tolist() == [i for i in range(4000) if not 1000 <= i < 3000 or i % 250]


@pytest.mark.parametrize("mode", ["mih", "scan"])
def test_batches_with_more_matches_than_the_first_buffer(rng: np.random.Generator, mode: str) -> None:
    """Output buffers start small; a batch whose matches overflow them resumes and loses nothing."""
    queries = random_words(rng, 40)
    stored = np.concatenate([np.stack([flip_bits(rng, q, k % 20) for k in range(150)]) for q in queries])
    table = PdqTable.build(np.ascontiguousarray(stored), Layout(16, 16))
    dead = np.zeros(len(stored), dtype=np.uint8)
    got = as_dicts(*table.search(queries, 31, dead, mode), len(queries))  # type: ignore[arg-type]
    assert got == brute_force(stored, queries, 31)
    assert sum(len(g) for g in got) == 40 * 150


@pytest.mark.parametrize("mode", ["auto", "mih", "scan"])
def test_after_a_delta_answers_equal_a_fresh_build(rng: np.random.Generator, mode: str) -> None:
    """Main table + side table + tombstones are searched together and give exactly a fresh build's hits."""
    stored, queries = planted(rng, 8000, 12)
    ids = rng.permutation(len(stored)).astype(np.int64) * 3 + 1
    index = PdqIndex.build(stored[:7000], ids[:7000], merge_at=10**9)
    gone = ids[rng.choice(7000, size=500, replace=False)]
    index.apply_delta(stored[7000:], ids[7000:], gone)
    index.add(stored[:2], ids[:2])  # re-adding live ids moves them to the side table
    keep = ~np.isin(ids, gone) | np.isin(ids, ids[:2])
    fresh = PdqIndex.build(stored[keep], ids[keep])
    for threshold in (0, 31, 52, 64):
        for batch in (queries[:1], queries):
            got, want = index.search(batch, threshold, mode), fresh.search(batch, threshold, "mih")  # type: ignore[arg-type]
            assert got.query.tolist() == want.query.tolist(), (threshold, len(batch))
            assert got.ids.tolist() == want.ids.tolist(), (threshold, len(batch))
            assert got.distances.tolist() == want.distances.tolist(), (threshold, len(batch))


@pytest.mark.parametrize("mode", ["auto", "mih"])
def test_a_large_side_table_has_its_own_multi_index_and_exact_answers(rng: np.random.Generator, mode: str) -> None:
    """A delta of thousands of adds gets a 16 x 16-bit side MIH (cheap per query) and answers stay exact."""
    stored, queries = planted(rng, 6000, 10)  # 6,650 hashes
    ids = rng.permutation(len(stored)).astype(np.int64) * 2 + 7
    index = PdqIndex.build(stored[:2000], ids[:2000], merge_at=10**9)
    gone = np.concatenate([ids[rng.choice(2000, size=300, replace=False)], ids[2000:2100]])
    index.apply_delta(stored[2000:], ids[2000:], [])
    index.apply_delta(stored[:0], ids[:0], gone)  # tombstones in the main and the side table
    side = index._state.side
    assert side is not None and len(side) >= 4096
    assert side.table.layout == Layout.for_side(len(side)) == Layout(16, 16)
    assert Layout.for_side(100) == Layout.for_size(100)
    keep = ~np.isin(ids, gone)
    fresh = PdqIndex.build(stored[keep], ids[keep])
    for threshold in (0, 10, 31, 40, 52):
        for batch in (queries[:1], queries):
            got, want = index.search(batch, threshold, mode), fresh.search(batch, threshold, "scan")  # type: ignore[arg-type]
            assert got.query.tolist() == want.query.tolist(), (threshold, len(batch))
            assert got.ids.tolist() == want.ids.tolist(), (threshold, len(batch))
            assert got.distances.tolist() == want.distances.tolist(), (threshold, len(batch))


def test_scan_resumes_after_an_output_overflow(rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """With small tiles the scan's output buffer (sized for a few hits) overflows mid-tile; nothing is lost."""
    monkeypatch.setattr(scan, "SCAN_TILE", 64)
    queries = random_words(rng, 30)
    stored = np.concatenate([np.stack([flip_bits(rng, q, k % 40) for k in range(100)]) for q in queries])
    stored = stored[rng.permutation(len(stored))]
    table = PdqTable.build(np.ascontiguousarray(stored), Layout(16, 16))
    dead = np.zeros(len(stored), dtype=np.uint8)
    got = as_dicts(*table.search(queries, 52, dead, "scan"), len(queries))
    assert got == brute_force(stored, queries, 52)
    assert sum(len(g) for g in got) == 30 * 100


def test_auto_mode_scans_large_thresholds_in_batches_only() -> None:
    def table_of(n: int) -> PdqTable:
        table = PdqTable.build(np.zeros((0, 4), dtype=np.uint64), Layout.for_size(n))
        table.hashes = np.zeros((n, 1), dtype=np.uint64)  # only len() matters to the cost model
        return table

    big, small = table_of(10_000_000), table_of(1_000_000)
    for table in (big, small):
        assert table.choose_mode(31, 1) == "mih"
        assert table.choose_mode(31, 1000) == "mih"
        assert table.choose_mode(52, 1) == "mih"
        assert table.choose_mode(64, 1) == "scan"
    # with the cost model's constants (a scan without AVX-512): a d=52 batch is cheaper by MIH at 10M only
    assert small.choose_mode(52, 1000) == "scan"
    assert big.choose_mode(52, 1000) == "mih"


def test_ids_equal_to_rows_keep_no_id_array_and_behave_the_same(rng: np.random.Generator, tmp_path: Path) -> None:
    stored = random_words(rng, 2000)
    dense = PdqIndex.build(stored, None, background_merge=False)
    explicit = PdqIndex.build(stored, np.arange(2000) * 3, background_merge=False)
    assert dense._state.main.all_dense and len(dense._state.main.ids) == 0
    assert not explicit._state.main.all_dense and explicit._state.main.id_array().tolist() == list(range(0, 6000, 3))
    dense.remove([5, 1999, 2000, -1])
    dense.add(stored[:1], [7000])
    queries = np.stack([flip_bits(rng, stored[i], 12) for i in (0, 5, 1999, 77)])
    want = brute_force(stored, queries, 31)
    for w in want:
        w.pop(5, None), w.pop(1999, None)
    want[0][7000] = want[0][0]
    got = [dict(zip(i.tolist(), d.tolist(), strict=True)) for i, d in dense.search(queries, 31).per_query(4)]
    assert got == want
    save_pdq(dense, tmp_path / "d")
    loaded = load_pdq(tmp_path / "d", mmap=False)
    assert [dict(zip(i.tolist(), d.tolist(), strict=True)) for i, d in loaded.search(queries, 31).per_query(4)] == want


@pytest.mark.parametrize("ids_kind", ["rows", "rows then a gap", "sparse"])
def test_append_merge_is_exact_at_every_step_and_honours_removes(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, ids_kind: str
) -> None:
    """A merge appends the side table's rows to the main table chunk by chunk; every state queries can see
    on the way (the appended rows hidden in main, still in the merging side table) answers exactly, and
    removes that arrive during the merge, of old and of appended rows, are honoured after it."""
    stored, queries = planted(rng, 6000, 8)  # 6,520 hashes: 5,000 in the main table, 1,520 added
    n = 5000
    ids = {
        "rows": np.arange(len(stored)),
        "rows then a gap": np.concatenate([np.arange(n), np.arange(n + 7, len(stored) + 7)]),
        "sparse": np.arange(len(stored)) * 3 + 1,
    }[ids_kind].astype(np.int64)
    index = PdqIndex.build(stored[:n], None if ids_kind != "sparse" else ids[:n], background_merge=False)
    live = np.ones(len(stored), dtype=bool)
    gone = rng.choice(n, size=100, replace=False)
    live[gone] = False
    live[n + 3] = False  # added and removed in the same delta: removes apply first, so it stays
    index.apply_delta(stored[n:], ids[n:], np.concatenate([ids[gone], ids[n + 3 : n + 4]]))
    live[n + 3] = True
    assert index._state.side is not None and len(index._state.side) == len(stored) - n

    def check(label: str) -> None:
        for threshold in (0, 31, 52, 64):
            want = brute_force(stored[live], queries, threshold)
            ids_live = ids[live]
            want_ids = [{int(ids_live[r]): d for r, d in w.items()} for w in want]
            for mode in ("mih", "scan"):
                hits = index.search(queries, threshold, mode)  # type: ignore[arg-type]
                got = as_dicts(hits.query, hits.ids, hits.distances, len(queries))
                assert got == want_ids, (label, threshold, mode)

    steps: list[int] = []
    real_merge_chunk = build.merge_chunk

    def merge_chunk_checked(*args: object) -> None:
        check(f"before chunk {len(steps)}")  # the state published after the previous chunk
        if len(steps) == 2:  # removes during the merge: an old row and an appended one
            index.remove([ids[n + 10], ids[gone[0] + 1 if gone[0] + 1 not in gone else gone[0] - 1]])
            live[n + 10] = False
            live[gone[0] + 1 if gone[0] + 1 not in gone else gone[0] - 1] = False
        steps.append(1)
        real_merge_chunk(*args)

    monkeypatch.setattr(build, "merge_chunk", merge_chunk_checked)
    index.merge()
    assert index.last_merge is not None and index.last_merge[0] == "append"
    assert len(steps) == index._state.main.table.layout.chunks
    main = index._state.main
    assert index._state.side is None and index._state.merging is None
    assert len(main) == len(stored) and len(main.table.hashes) == n  # the base array was not copied
    assert main.all_dense == (ids_kind == "rows")
    check("after the merge")
    assert len(index) == int(live.sum())
    assert index.contains(ids).tolist() == live.tolist()


def test_append_merge_then_save_and_load(rng: np.random.Generator, tmp_path: Path) -> None:
    stored, queries = planted(rng, 5000, 6)  # 5,390 hashes: 4,200 built, 1,190 added (same layout)
    index = PdqIndex.build(stored[:4200], np.arange(4200) * 2, background_merge=False, merge_at=100)
    index.add(stored[4200:], np.arange(4200, len(stored)) * 2)  # over merge_at: merged now
    assert index._state.side is None and index.last_merge is not None and index.last_merge[0] == "append"
    save_pdq(index, tmp_path / "i")
    for mmap in (True, False):
        loaded = load_pdq(tmp_path / "i", mmap=mmap)
        for threshold in (31, 64):
            a, b = index.search(queries, threshold), loaded.search(queries, threshold)
            assert (a.query.tolist(), a.ids.tolist(), a.distances.tolist()) == (
                b.query.tolist(), b.ids.tolist(), b.distances.tolist()
            )  # fmt: skip
        want = brute_force(stored, queries, 40)
        got = [
            dict(zip((i // 2).tolist(), d.tolist(), strict=True)) for i, d in loaded.search(queries, 40).per_query(6)
        ]
        assert got == want


def test_an_id_below_the_main_tables_ids_merges_by_rebuild(rng: np.random.Generator) -> None:
    """Main rows stay sorted by id (removes are binary searches): an add below the largest id is not
    appended, the merge rebuilds, and the answers are the same."""
    stored = random_words(rng, 3000)
    index = PdqIndex.build(stored[:2000], np.arange(2000) * 2 + 10, background_merge=False)
    index.apply_delta(stored[2000:], np.concatenate([[1], np.arange(2001, 3000) * 2 + 10]), [10, 12])
    index.merge()
    assert index.last_merge is not None and index.last_merge[0] == "rebuild"
    hits = index.search(stored, 0)
    assert hits.ids.tolist() == [*range(14, 4010, 2), 1, *range(4012, 6010, 2)]


def _crowded(rng: np.random.Generator, n: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Planted hashes whose low 32 bits are zero, queries too: every row shares its first chunk's bucket,
    so one line of bucket starts holds them all (what many copies of one degenerate picture look like)."""
    stored, queries = planted(rng, n, n_queries)
    for words in (stored, queries):
        words[:, 0] &= np.uint64(0xFFFF_FFFF_0000_0000)
    return np.ascontiguousarray(stored), queries


def test_a_chunk_whose_line_outgrows_uint16_keeps_uint32_starts(rng: np.random.Generator, tmp_path: Path) -> None:
    """Bucket starts are packed in 64-byte lines of uint8 or uint16 starts relative to a uint32 base; a line
    of more than 65,535 rows makes its chunk keep plain uint32 starts, and answers stay exact, saved and
    loaded too."""
    stored, queries = _crowded(rng, 66_000, 3)  # 66,195 rows in one bucket of chunk 0
    table = PdqTable.build(stored, Layout(16, 16))
    assert table.starts[0].dtype == table.starts[1].dtype == np.uint32  # bits 16-31 are zero too
    assert all(table.starts[c].dtype == np.uint8 for c in range(2, 16))  # ~60 rows a line of 59 buckets
    offs = table.offsets(0)
    assert int(offs[0]) == 0 and int(offs[1]) == len(stored)  # every row in bucket 0
    dead = np.zeros(len(stored), dtype=np.uint8)
    for threshold in (0, 31, 52):
        want = brute_force(stored, queries, threshold)
        assert as_dicts(*table.search(queries, threshold, dead, "mih"), len(queries)) == want, threshold
    index = PdqIndex.build(stored, None)
    save_pdq(index, tmp_path / "i")
    for mmap in (True, False):
        loaded = load_pdq(tmp_path / "i", mmap=mmap)
        lt = loaded._state.main.table
        assert [a.dtype for a in lt.starts] == [a.dtype for a in index._state.main.table.starts]
        hits = loaded.search(queries, 31, mode="mih")
        assert as_dicts(hits.query, hits.ids, hits.distances, len(queries)) == brute_force(stored, queries, 31)


def test_an_append_merge_equals_a_fresh_build_array_for_array(rng: np.random.Generator) -> None:
    """A merge writes each chunk's tables as a build of all the rows would, including chunks whose fullest
    line outgrows their starts' type in the merge (chunk 0 from uint16 to uint32, chunk 2 from uint8 to
    uint16) and the ones that keep it."""
    crowded, queries = _crowded(rng, 60_000, 3)  # 60,195 rows in one bucket: its line fits uint16 starts
    stored = np.concatenate([crowded, random_words(rng, 10_000)])  # (the layout stays 13 x 20 bits)
    more, _ = _crowded(rng, 6_000, 1)  # +6,065 rows in that bucket: the line no longer does
    chunk2 = np.uint64(((1 << 20) - 1) << 40)  # chunk 2 of 13 x 20 bits: bits 40-59
    stored[len(crowded) : len(crowded) + 240, 0] &= ~chunk2  # 240 rows in its bucket 0: uint8 starts still
    more[:20, 0] &= ~chunk2  # +20: no longer
    index = PdqIndex.build(stored, None, background_merge=False, merge_at=1_000)
    before = [a.dtype for a in index._state.main.table.starts]
    assert before[:3] == [np.uint16, np.uint16, np.uint8]
    index.add(more, np.arange(len(stored), len(stored) + len(more)))
    assert index.last_merge is not None and index.last_merge[0] == "append"
    merged = index._state.main.table
    everything = np.concatenate([stored, more])
    fresh = PdqTable.build(everything, merged.layout)
    assert [a.dtype for a in merged.starts] == [np.uint32, np.uint16, np.uint16, *before[3:]]
    for c in range(merged.layout.chunks):
        assert merged.starts[c].dtype == fresh.starts[c].dtype, c
        assert np.array_equal(merged.offsets(c), fresh.offsets(c)), c
        assert np.array_equal(merged.starts[c], fresh.starts[c]), c
        assert np.array_equal(merged.rows[c], fresh.rows[c]) and np.array_equal(merged.occ[c], fresh.occ[c]), c
    for threshold in (31, 64):
        hits = index.search(queries, threshold, mode="mih")
        want = brute_force(everything, queries, threshold)
        assert as_dicts(hits.query, hits.ids, hits.distances, len(queries)) == want, threshold
