"""The reference matcher: hashing on the partner's machine, and the indexes the hub and the kit search.

The names in ``__all__`` are the frozen public surface, documented in docs/matcher.md ("Public API") and
pinned by tests/matching/test_api.py; everything else (the kernels, the tables, the signal table) may change.
"""

from __future__ import annotations

from partners.matching.errors import (
    DuplicateIdError,
    HashingError,
    IndexFormatError,
    InvalidHashError,
    InvalidThresholdError,
    MatchingError,
    UnknownSignalTypeError,
)
from partners.matching.exact_index import ExactIndex
from partners.matching.hashing import HashResult, hash_bytes, hash_file, hash_files
from partners.matching.matcher import Match, Matcher
from partners.matching.pdq_index import Hits, PdqIndex
from partners.matching.signal_table import SignalId, uuid_words
from partners.matching.signals import (
    DEFAULT_PDQ_THRESHOLD,
    MAX_PDQ_THRESHOLD,
    SignalType,
    pdq_hex_to_words,
    pdq_words_to_hex,
)
from partners.matching.storage import load_pdq, save_pdq
from partners.matching.vpdq import DEFAULT_VPDQ_PERCENT, VideoMatch, VpdqFrame, format_vpdq, parse_vpdq

__all__ = [
    "DEFAULT_PDQ_THRESHOLD",
    "DEFAULT_VPDQ_PERCENT",
    "MAX_PDQ_THRESHOLD",
    "DuplicateIdError",
    "ExactIndex",
    "HashResult",
    "HashingError",
    "Hits",
    "IndexFormatError",
    "InvalidHashError",
    "InvalidThresholdError",
    "Match",
    "Matcher",
    "MatchingError",
    "PdqIndex",
    "SignalId",
    "SignalType",
    "UnknownSignalTypeError",
    "VideoMatch",
    "VpdqFrame",
    "format_vpdq",
    "hash_bytes",
    "hash_file",
    "hash_files",
    "load_pdq",
    "parse_vpdq",
    "pdq_hex_to_words",
    "pdq_words_to_hex",
    "save_pdq",
    "uuid_words",
]
