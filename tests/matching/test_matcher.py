"""The Matcher facade: collections, per-collection thresholds, exact types, removes."""

from __future__ import annotations

import numpy as np
import pytest

from partners.matching.errors import InvalidHashError, UnknownSignalTypeError
from partners.matching.matcher import Match, Matcher
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
