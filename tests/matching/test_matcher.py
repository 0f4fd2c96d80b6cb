"""The Matcher facade: collections, per-collection thresholds, exact types, removes."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from partners.matching.errors import DuplicateIdError, IndexFormatError, InvalidHashError, UnknownSignalTypeError
from partners.matching.matcher import Match, Matcher
from partners.matching.signal_table import SignalId, uuid_words
from partners.matching.signals import pdq_words_to_hex
from tests.matching.conftest import brute_force, flip_bits, random_words


@pytest.fixture
def hashes(rng: np.random.Generator) -> list[str]:
    base = random_words(rng, 1)[0]
    return pdq_words_to_hex(
        np.stack([base, flip_bits(rng, base, 10), flip_bits(rng, base, 25), flip_bits(rng, base, 45)])
    )


def test_pdq_matches_carry_collection_signal_and_distance(hashes: list[str]) -> None:
    matcher = Matcher()
    matcher.add("ncii", "pdq", [("s-10", hashes[1]), ("s-25", hashes[2]), ("s-45", hashes[3])])
    matcher.add("other", "pdq", [(7, hashes[1])])
    [found] = matcher.match("pdq", [hashes[0]])
    assert found == [Match(10, "ncii", "s-10"), Match(10, "other", 7), Match(25, "ncii", "s-25")]
    assert matcher.match("pdq", [hashes[0]], collections=["other"]) == [[Match(10, "other", 7)]]


def test_query_threshold_can_only_lower_the_collection_threshold(hashes: list[str]) -> None:
    matcher = Matcher()
    matcher.add("strict", "pdq", [("a", hashes[2])])
    matcher.add("loose", "pdq", [("b", hashes[3])])
    matcher.set_threshold("strict", 20)
    matcher.set_threshold("loose", 52)
    assert matcher.match("pdq", [hashes[0]]) == [[Match(45, "loose", "b")]]
    assert matcher.match("pdq", [hashes[0]], threshold=64) == [[Match(45, "loose", "b")]]  # not above 20/52
    assert matcher.match("pdq", [hashes[0]], threshold=30) == [[]]
    with pytest.raises(ValueError):
        matcher.match("pdq", [hashes[0]], threshold=65)
    with pytest.raises(ValueError):
        matcher.set_threshold("strict", -1)


def test_exact_types_and_removes(hashes: list[str]) -> None:
    matcher = Matcher()
    md5 = "d41d8cd98f00b204e9800998ecf8427e"
    sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    matcher.add("c", "md5", [("m", md5)])
    matcher.add("c", "sha256", [("s", sha)])
    matcher.add("c", "pdq", [("p", hashes[0])])
    assert matcher.match("md5", [md5.upper(), "0" * 32]) == [[Match(0, "c", "m")], []]
    assert matcher.match("sha256", [sha]) == [[Match(0, "c", "s")]]
    assert matcher.remove("c", ["m", "p", "nope"]) == 2
    assert matcher.match("md5", [md5]) == [[]]
    assert matcher.match("pdq", [hashes[0]]) == [[]]
    matcher.add("c", "pdq", [("p", hashes[0])])  # re-add after remove
    assert matcher.match("pdq", [hashes[0]]) == [[Match(0, "c", "p")]]
    assert len(matcher) == 2


def test_bad_input_is_refused_before_any_change(hashes: list[str]) -> None:
    matcher = Matcher()
    with pytest.raises(InvalidHashError):
        matcher.add("c", "pdq", [("ok", hashes[0]), ("bad", "xyz")])
    with pytest.raises(InvalidHashError):
        matcher.add("c", "md5", [("bad", "0" * 31)])
    with pytest.raises(UnknownSignalTypeError):
        matcher.add("c", "tmk", [])
    assert len(matcher) == 0


def test_uuid_int_and_text_ids_round_trip_and_keys_are_reused(hashes: list[str]) -> None:
    matcher = Matcher()
    ids: list[SignalId] = [str(uuid.UUID(int=0xABC)), -5, "Not-A-UUID", str(uuid.UUID(int=0xABC)).upper()]
    matcher.add("c", "pdq", [(sid, hashes[1]) for sid in ids])
    [found] = matcher.match("pdq", [hashes[0]])
    assert sorted(str(m.signal_id) for m in found) == sorted(str(s) for s in ids)
    assert {type(m.signal_id) for m in found} == {int, str}
    size = matcher._table.size
    assert matcher.remove("c", [-5, "Not-A-UUID"]) == 2
    matcher.add("c", "pdq", [(-5, hashes[2])])  # the same signal again takes its old key
    assert matcher._table.size == size
    assert [m.signal_id for m in matcher.match("pdq", [hashes[0]])[0]] == [ids[3], ids[0], -5]
    with pytest.raises(DuplicateIdError):
        matcher.add("c", "pdq", [(1, hashes[0]), (1, hashes[1])])


def test_bulk_uuid_add(rng: np.random.Generator) -> None:
    words = random_words(rng, 1000)
    sids = [str(uuid.UUID(int=int(i) * 977 + 1)) for i in range(1000)]
    matcher = Matcher()
    matcher.add_pdq("big", uuid_words(sids), words)
    assert len(matcher) == 1000
    found = matcher.match("pdq", pdq_words_to_hex(words[[3, 500]]), threshold=0)
    assert found == [[Match(0, "big", sids[3])], [Match(0, "big", sids[500])]]
    assert matcher.remove("big", sids[:10]) == 10
    assert matcher.match("pdq", pdq_words_to_hex(words[:1]), threshold=0) == [[]]


def test_save_and_load(tmp_path: Path, hashes: list[str]) -> None:
    matcher = Matcher(default_threshold=20)
    matcher.set_threshold("loose", 52)
    matcher.add("loose", "pdq", [("a", hashes[3]), (9, hashes[2])])
    matcher.add("strict", "pdq", [(str(uuid.UUID(int=1)), hashes[1])])
    matcher.add("strict", "md5", [("m", "d41d8cd98f00b204e9800998ecf8427e")])
    matcher.remove("loose", [9])
    matcher.save(tmp_path / "m")
    loaded = Matcher.load(tmp_path / "m")
    assert len(loaded) == len(matcher) == 3
    for kind, value in (("pdq", hashes[0]), ("md5", "d41d8cd98f00b204e9800998ecf8427e")):
        assert loaded.match(kind, [value]) == matcher.match(kind, [value])
    loaded.add("loose", "pdq", [(9, hashes[0])])
    assert Match(0, "loose", 9) in loaded.match("pdq", [hashes[0]])[0]
    data = bytearray((tmp_path / "m" / "sid.npy").read_bytes())
    data[-1] ^= 1
    (tmp_path / "m" / "sid.npy").write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match=r"sid\.npy"):
        Matcher.load(tmp_path / "m")


def test_bulk_build_refuses_duplicates_takes_removes_and_answers_like_brute_force(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    n = 3000
    stored = random_words(rng, n)
    queries = np.stack([flip_bits(rng, stored[i * 97], k) for i, k in enumerate((0, 3, 9, 17, 28, 31, 40))])
    sids = rng.integers(0, 2**64, size=(n, 2), dtype=np.uint64)
    with pytest.raises(DuplicateIdError):
        twice = sids.copy()
        twice[2000] = twice[7]
        Matcher().add_pdq("c", twice, stored)
    names = [str(uuid.UUID(int=(int(hi) << 64) | int(lo))) for hi, lo in sids.tolist()]
    matcher = Matcher(background_merge=False)
    matcher.set_threshold("c", 64)  # the query's threshold decides
    matcher.add_pdq("c", sids, stored)
    with pytest.raises(DuplicateIdError):  # into a non-empty matcher too, and nothing changes
        matcher.add(
            "c", "pdq", [(names[5], pdq_words_to_hex(stored[:1])[0]), (names[5], pdq_words_to_hex(stored[:1])[0])]
        )
    gone = list(range(0, n, 7))
    assert matcher.remove("c", [names[i] for i in gone]) == len(gone)
    back = gone[::2]  # re-added with other hashes: the same keys, new values
    moved = random_words(rng, len(back))
    moved[0] = queries[1]
    matcher.add("c", "pdq", [(names[i], h) for i, h in zip(back, pdq_words_to_hex(moved), strict=True)])
    assert len(matcher) == n - len(gone) + len(back)

    current = {i: stored[i] for i in range(n) if i not in set(gone)} | dict(zip(back, moved, strict=True))
    rows = sorted(current)
    words = np.stack([current[i] for i in rows])
    for threshold in (0, 17, 31, 52):
        want = [sorted((d, names[rows[r]]) for r, d in hits.items()) for hits in brute_force(words, queries, threshold)]
        got = matcher.match("pdq", pdq_words_to_hex(queries), threshold=threshold)
        assert [[(m.distance, m.signal_id) for m in f] for f in got] == want, threshold
        assert all(m.collection == "c" for f in got for m in f)
    matcher.save(tmp_path / "m")
    loaded = Matcher.load(tmp_path / "m")
    assert loaded.match("pdq", pdq_words_to_hex(queries), threshold=31) == matcher.match(
        "pdq", pdq_words_to_hex(queries), threshold=31
    )


@pytest.mark.parametrize("kind", ["uuid", "small ints", "mixed forms"])
def test_batch_sort_orders_ids_and_finds_repeats(rng: np.random.Generator, kind: str) -> None:
    from partners.matching.signal_table import sort_batch

    n = 5000
    sid = np.zeros((n, 2), dtype=np.uint64)
    form = np.ones(n, dtype=np.int8)
    if kind == "uuid":
        sid[:] = rng.integers(0, 2**64, size=(n, 2), dtype=np.uint64)
    elif kind == "small ints":
        sid[:, 0] = rng.permutation(n).astype(np.uint64)
    else:
        form = rng.integers(1, 4, size=n).astype(np.int8)
        sid[:, 0] = rng.integers(0, 3, size=n).astype(np.uint64)
        sid[:, 1] = rng.permutation(n).astype(np.uint64)
    perm = sort_batch(form, sid)
    assert perm.tolist() == np.lexsort((sid[:, 1], sid[:, 0], form)).tolist()
    sid[n - 1], form[n - 1] = sid[11], form[11]
    with pytest.raises(DuplicateIdError):
        sort_batch(form, sid)


def test_single_queries_answer_like_brute_force_across_collections_id_forms_and_ties(
    rng: np.random.Generator,
) -> None:
    """One query at a time (the hub's and the CLI's usual call) and the same queries in one batch give the
    brute-force answer: every signal within min(query, collection) threshold with its distance, none beyond,
    ties of distance in (collection, id) order, whatever the id form (UUID, int, any other string)."""
    base = random_words(rng, 1)[0]
    near = np.stack([flip_bits(rng, base, k) for k in (0, 5, 5, 12, 20, 31, 32, 40)] + list(random_words(rng, 200)))
    forms: list[SignalId] = [str(uuid.UUID(int=int(v))) for v in rng.integers(0, 2**63, size=len(near))]
    forms[1], forms[2], forms[3], forms[4] = -5, 2**40, "sig-b", "sig-a"
    limits = {"a": 31, "b": 12, "c": 64}
    matcher = Matcher(background_merge=False)
    stored: list[tuple[str, SignalId, np.ndarray]] = []
    for name, threshold in limits.items():
        matcher.set_threshold(name, threshold)
        # each collection holds every hash (ties of distance across collections) under its own ids
        ids = [f if not isinstance(f, str) or name == "a" else f"{name}-{f}" for f in forms]
        matcher.add(name, "pdq", list(zip(ids, pdq_words_to_hex(near), strict=True)))
        stored += [(name, i, w) for i, w in zip(ids, near, strict=True)]
    matcher.remove("c", [stored[2 * len(near) + 3][1]])  # a removed signal is not reported
    stored.pop(2 * len(near) + 3)
    queries = np.stack([base, flip_bits(rng, base, 3), random_words(rng, 1)[0]])
    words = np.stack([w for _, _, w in stored])
    for asked, wanted in ((None, None), (31, None), (20, ["a", "c"]), (64, ["b"]), (0, None)):
        oracle = brute_force(words, queries, 64)
        want = []
        for hits in oracle:
            rows = [
                (d, stored[r][0], stored[r][1])
                for r, d in hits.items()
                if d <= min(limits[stored[r][0]], 64 if asked is None else asked)
                and (wanted is None or stored[r][0] in wanted)
            ]
            want.append([Match(*m) for m in sorted(rows, key=lambda m: (m[0], m[1], str(m[2])))])
        hexes = pdq_words_to_hex(queries)
        single = [matcher.match("pdq", [h], threshold=asked, collections=wanted)[0] for h in hexes]
        assert single == want, (asked, wanted)
        assert matcher.match("pdq", hexes, threshold=asked, collections=wanted) == want, (asked, wanted)
    assert any(len({m.distance for m in f}) < len(f) for f in want)  # the case had ties


@pytest.mark.parametrize(
    "value",
    ["ab" * 31 + "a ", " " + "ab" * 31 + "a", "0x" + "ab" * 31, "ab" * 31 + "g0", "ab" * 33, "é" * 64, "+" + "a" * 63],
    ids=["trailing space", "leading space", "0x prefix", "non-hex digit", "too long", "non-ascii", "sign"],
)
def test_pdq_queries_must_be_64_hex_digits(hashes: list[str], value: str) -> None:
    matcher = Matcher()
    matcher.add("c", "pdq", [("a", hashes[0])])
    with pytest.raises(InvalidHashError):
        matcher.match("pdq", [hashes[0], value])
    assert matcher.match("pdq", [hashes[0].upper()]) == [[Match(0, "c", "a")]]


def test_adds_after_a_bulk_load_grow_the_table_and_answer_like_brute_force(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    """Signals added after a bulk load (ids kept apart from the bulk's, the table grown past its room in
    several batches, every id form) are found, removed and re-added by id like the bulk's own, and the
    matcher saved and loaded answers the same."""
    n = 3000
    stored = random_words(rng, n)
    sids = rng.integers(0, 2**64, size=(n, 2), dtype=np.uint64)
    names: list[tuple[str, SignalId]] = [("c", str(uuid.UUID(int=(int(h) << 64) | int(lo)))) for h, lo in sids.tolist()]
    matcher = Matcher(background_merge=False)
    matcher.set_threshold("c", 64)
    matcher.set_threshold("d", 64)
    matcher.add_pdq("c", sids, stored)
    current = dict(zip(names, stored, strict=True))
    for batch in range(4):  # 4 x 700 new signals: past the bulk's room of 1,024 keys
        words = random_words(rng, 700)
        ids: list[SignalId] = [str(uuid.UUID(int=int(v))) for v in rng.integers(0, 2**63, size=700)]
        ids[:3] = [batch * 1000 + 1, -(batch + 1), f"text-{batch}"]
        coll = "d" if batch % 2 else "c"
        matcher.add(coll, "pdq", list(zip(ids, pdq_words_to_hex(words), strict=True)))
        current |= dict(zip([(coll, i) for i in ids], words, strict=True))
    keys = list(current)
    gone = keys[::5]  # bulk and later signals alike
    for coll in ("c", "d"):
        mine = [i for c, i in gone if c == coll]
        assert matcher.remove(coll, mine) == len(mine)
        assert matcher.remove(coll, mine) == 0
    for key in gone:
        del current[key]
    back = gone[::3]
    moved = random_words(rng, len(back))
    for coll in ("c", "d"):
        pairs = [(i, h) for (c, i), h in zip(back, pdq_words_to_hex(moved), strict=True) if c == coll]
        matcher.add(coll, "pdq", pairs)
    current |= dict(zip(back, moved, strict=True))
    assert len(matcher) == len(current)

    keys = list(current)
    words = np.stack([current[k] for k in keys])
    queries = np.stack([flip_bits(rng, words[i * 301], k) for i, k in enumerate((0, 4, 11, 23, 31, 38))])
    for threshold in (0, 31, 52):
        want = [
            sorted((d, keys[r][0], str(keys[r][1])) for r, d in hits.items())
            for hits in brute_force(words, queries, threshold)
        ]
        got = matcher.match("pdq", pdq_words_to_hex(queries), threshold=threshold)
        assert [[(m.distance, m.collection, str(m.signal_id)) for m in f] for f in got] == want, threshold
        single = [matcher.match("pdq", [h], threshold=threshold)[0] for h in pdq_words_to_hex(queries)]
        assert single == got
    matcher.save(tmp_path / "m")
    loaded = Matcher.load(tmp_path / "m")
    assert loaded.match("pdq", pdq_words_to_hex(queries), threshold=52) == got
    later = [i for c, i in current if c == "d"][-2:]  # signals added after the bulk load, by id
    assert loaded.remove("d", later) == 2 and len(loaded) == len(current) - 2
