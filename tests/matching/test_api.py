"""The public surface of ``partners.matching`` (docs/matcher.md, "Public API"): its names and signatures are
frozen, so a change to them fails here and has to be made on purpose, with the docs."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import pytest

import partners.matching as pm
from partners.matching import exact_index, matcher, storage

PUBLIC = [
    "DEFAULT_PDQ_THRESHOLD", "MAX_PDQ_THRESHOLD", "DuplicateIdError", "ExactIndex", "HashResult", "HashingError",
    "Hits", "IndexFormatError", "InvalidHashError", "InvalidThresholdError", "Match", "Matcher", "MatchingError",
    "PdqIndex", "SignalId", "SignalType", "UnknownSignalTypeError", "hash_bytes", "hash_file", "hash_files",
    "load_pdq", "pdq_hex_to_words", "pdq_words_to_hex", "save_pdq", "uuid_words",
    # videos (issue 23): added, nothing above changed
    "DEFAULT_VPDQ_PERCENT", "VideoMatch", "VpdqFrame", "format_vpdq", "parse_vpdq",
]  # fmt: skip

SIGNATURES: list[tuple[str, Callable[..., Any], str]] = [
    ("PdqIndex()", pm.PdqIndex.__init__,
     "(self, *, merge_at: 'int' = 4096, background_merge: 'bool' = True) -> 'None'"),
    ("PdqIndex.build", pm.PdqIndex.build,
     "(hashes: 'npt.ArrayLike', ids: 'npt.ArrayLike | None' = None, *, copy: 'bool' = True, **kwargs: 'int | bool')"
     " -> 'PdqIndex'"),
    ("PdqIndex.warmup", pm.PdqIndex.warmup, "(self) -> 'None'"),
    ("PdqIndex.__len__", pm.PdqIndex.__len__, "(self) -> 'int'"),
    ("PdqIndex.search", pm.PdqIndex.search,
     "(self, queries: 'npt.ArrayLike', threshold: 'int' = 31, mode: 'SearchMode' = 'auto') -> 'Hits'"),
    ("PdqIndex.search_words", pm.PdqIndex.search_words,
     "(self, words: 'U64Array', threshold: 'int', mode: 'SearchMode' = 'auto')"
     " -> 'tuple[I64Array, I64Array, I64Array]'"),
    ("PdqIndex.contains", pm.PdqIndex.contains, "(self, ids: 'npt.ArrayLike') -> 'npt.NDArray[np.bool_]'"),
    ("PdqIndex.live", pm.PdqIndex.live, "(self) -> 'tuple[U64Array, I64Array]'"),
    ("PdqIndex.add", pm.PdqIndex.add, "(self, hashes: 'npt.ArrayLike', ids: 'npt.ArrayLike') -> 'None'"),
    ("PdqIndex.remove", pm.PdqIndex.remove, "(self, ids: 'npt.ArrayLike') -> 'int'"),
    ("PdqIndex.apply_delta", pm.PdqIndex.apply_delta,
     "(self, add_hashes: 'npt.ArrayLike', add_ids: 'npt.ArrayLike', remove_ids: 'npt.ArrayLike') -> 'None'"),
    ("PdqIndex.merge", pm.PdqIndex.merge, "(self, wait: 'bool' = True, *, compact: 'bool' = False) -> 'None'"),
    ("PdqIndex.wait_for_merge", pm.PdqIndex.wait_for_merge, "(self) -> 'None'"),
    ("Hits.per_query", pm.Hits.per_query, "(self, n_queries: 'int') -> 'list[tuple[I64Array, I64Array]]'"),
    ("save_pdq", pm.save_pdq, "(index: 'PdqIndex', path: 'str | os.PathLike[str]') -> 'None'"),
    ("load_pdq", pm.load_pdq,
     "(path: 'str | os.PathLike[str]', *, mmap: 'bool' = True, **kwargs: 'int | bool') -> 'PdqIndex'"),
    ("Matcher()", pm.Matcher.__init__,
     "(self, default_threshold: 'int' = 31, *, merge_at: 'int' = 4096, background_merge: 'bool' = True) -> 'None'"),
    ("Matcher.set_threshold", pm.Matcher.set_threshold, "(self, collection: 'str', threshold: 'int') -> 'None'"),
    ("Matcher.threshold", pm.Matcher.threshold, "(self, collection: 'str') -> 'int'"),
    ("Matcher.__len__", pm.Matcher.__len__, "(self) -> 'int'"),
    ("Matcher.warmup", pm.Matcher.warmup, "(self) -> 'None'"),
    ("Matcher.add", pm.Matcher.add,
     "(self, collection: 'str', signal_type: 'str | SignalType', items: 'Iterable[tuple[SignalId, str]]') -> 'None'"),
    ("Matcher.add_pdq", pm.Matcher.add_pdq,
     "(self, collection: 'str', signal_uuids: 'npt.ArrayLike', words: 'npt.ArrayLike', *, copy: 'bool' = True)"
     " -> 'None'"),
    ("Matcher.remove", pm.Matcher.remove, "(self, collection: 'str', ids: 'Iterable[SignalId]') -> 'int'"),
    ("Matcher.match", pm.Matcher.match,
     "(self, signal_type: 'str | SignalType', values: 'Sequence[str]', threshold: 'int | None' = None,"
     " collections: 'Iterable[str] | None' = None) -> 'list[list[Match]]'"),
    ("Matcher.set_vpdq_percent", pm.Matcher.set_vpdq_percent, "(self, collection: 'str', percent: 'int') -> 'None'"),
    ("Matcher.vpdq_percent", pm.Matcher.vpdq_percent, "(self, collection: 'str') -> 'int'"),
    ("Matcher.match_vpdq", pm.Matcher.match_vpdq,
     "(self, values: 'Sequence[str]', threshold: 'int | None' = None, collections: 'Iterable[str] | None' = None)"
     " -> 'list[list[VideoMatch]]'"),
    ("parse_vpdq", pm.parse_vpdq, "(value: 'str') -> 'list[VpdqFrame]'"),
    ("format_vpdq", pm.format_vpdq, "(frames: 'Iterable[VpdqFrame]') -> 'str'"),
    ("Matcher.save", pm.Matcher.save, "(self, path: 'str | os.PathLike[str]') -> 'None'"),
    ("Matcher.load", pm.Matcher.load,
     "(path: 'str | os.PathLike[str]', *, mmap: 'bool' = False, **kwargs: 'int | bool') -> 'Matcher'"),
    ("ExactIndex()", pm.ExactIndex.__init__, "(self, signal_type: 'SignalType') -> 'None'"),
    ("ExactIndex.add", pm.ExactIndex.add, "(self, values: 'Sequence[str]', ids: 'Sequence[int]') -> 'None'"),
    ("ExactIndex.remove", pm.ExactIndex.remove, "(self, ids: 'Iterable[int]') -> 'int'"),
    ("ExactIndex.search", pm.ExactIndex.search, "(self, values: 'Sequence[str]') -> 'list[list[int]]'"),
    ("ExactIndex.save", pm.ExactIndex.save, "(self, path: 'str | os.PathLike[str]') -> 'None'"),
    ("ExactIndex.load", pm.ExactIndex.load, "(path: 'str | os.PathLike[str]') -> 'ExactIndex'"),
    ("hash_file", pm.hash_file, "(path: 'str | os.PathLike[str]') -> 'HashResult'"),
    ("hash_bytes", pm.hash_bytes, "(data: 'bytes', path: 'str | None' = None) -> 'HashResult'"),
    ("hash_files", pm.hash_files, "(paths: 'Iterable[str | os.PathLike[str]]') -> 'Iterator[HashResult]'"),
    ("uuid_words", pm.uuid_words, "(signal_ids: 'Sequence[str]') -> 'U64Array'"),
    ("pdq_hex_to_words", pm.pdq_hex_to_words, "(values: 'Iterable[str]') -> 'U64Array'"),
    ("pdq_words_to_hex", pm.pdq_words_to_hex, "(words: 'U64Array') -> 'list[str]'"),
]  # fmt: skip


def test_the_public_names_are_exactly_the_documented_ones() -> None:
    assert sorted(pm.__all__) == sorted(PUBLIC)
    assert all(hasattr(pm, name) for name in PUBLIC)


@pytest.mark.parametrize(("name", "func", "expected"), SIGNATURES, ids=[s[0] for s in SIGNATURES])
def test_signature_is_the_documented_one(name: str, func: Callable[..., Any], expected: str) -> None:
    assert str(inspect.signature(func)) == expected


def test_result_types_keep_their_fields_and_formats_their_versions() -> None:
    assert pm.Match._fields == ("distance", "collection", "signal_id")
    assert [f.name for f in dataclasses.fields(pm.Hits)] == ["query", "ids", "distances"]
    assert [f.name for f in dataclasses.fields(pm.HashResult)] == [
        "path", "md5", "sha256", "pdq", "quality", "error", "vpdq"
    ]  # fmt: skip
    assert pm.VideoMatch._fields == ("collection", "signal_id", "query_percent", "stored_percent", "both_sides")
    assert pm.VpdqFrame._fields == ("pdq", "quality", "timestamp") and pm.DEFAULT_VPDQ_PERCENT == 80
    assert isinstance(inspect.getattr_static(pm.PdqIndex, "merge_running"), property)
    assert (pm.DEFAULT_PDQ_THRESHOLD, pm.MAX_PDQ_THRESHOLD) == (31, 64)
    assert [str(t) for t in pm.SignalType] == ["pdq", "md5", "sha256", "video_md5", "vpdq"]
    formats = {(m.FORMAT, m.VERSION) for m in (storage, matcher, exact_index)}
    assert formats == {("hashfed.pdq-index", 2), ("hashfed.matcher", 2), ("hashfed.exact-index", 1)}
