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
from tests.matching.conftest import flip_bits, random_words


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
        matcher.add("c", "vpdq", [])
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
