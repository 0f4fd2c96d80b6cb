"""Signal types and the parsing of hash values into the packed forms the indexes store.

PDQ hashes travel as 64 lowercase hex digits, Meta's ``pdq-photo-hasher`` convention: the hex string is the
256-bit hash as one big-endian integer. Inside the index a hash is four ``uint64`` words, word 0 holding the
first 16 hex digits. Hamming distance does not depend on the word order, so this is an internal detail.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from partners.matching.errors import InvalidHashError, InvalidThresholdError, UnknownSignalTypeError

PDQ_BITS = 256
PDQ_HEX_LEN = 64
DEFAULT_PDQ_THRESHOLD = 31
MAX_PDQ_THRESHOLD = 64  # a query may ask for at most this distance; beyond it PDQ matches are noise

U64Array = npt.NDArray[np.uint64]
I64Array = npt.NDArray[np.int64]


class SignalType(enum.StrEnum):
    """The hash types the matcher indexes (names as in the hub's data model)."""

    PDQ = "pdq"
    MD5 = "md5"
    SHA256 = "sha256"
    VIDEO_MD5 = "video_md5"  # MD5 of a video file's bytes: exact, like md5, but a type of its own
    VPDQ = "vpdq"  # Meta's video PDQ: frame hashes, matched by the share of frames (partners/matching/vpdq.py)

    @classmethod
    def parse(cls, value: str | SignalType) -> SignalType:
        """The signal type named by ``value``, or :class:`UnknownSignalTypeError`."""
        try:
            return cls(value)
        except ValueError as e:
            raise UnknownSignalTypeError(f"unknown signal type {value!r}") from e


VIDEO_MD5 = SignalType.VIDEO_MD5
VPDQ = SignalType.VPDQ
VIDEO_TYPES = (VIDEO_MD5, VPDQ)

EXACT_HEX_LEN = {SignalType.MD5: 32, SignalType.SHA256: 64, SignalType.VIDEO_MD5: 32}
# Hex digits of a value of each type with one (the hub's and the kit's one table of types that the feed
# takes); a vpdq value is a list of frames (partners/matching/vpdq.py), which the hub's feed does not take yet.
HEX_LEN = {SignalType.PDQ: PDQ_HEX_LEN, **EXACT_HEX_LEN}
_HEX_RE = re.compile(r"[0-9a-fA-F]*")


def parse_type(value: str) -> SignalType:
    """A signal type the matcher indexes (:meth:`SignalType.parse`)."""
    return SignalType.parse(value)


def normalize_hex(value: str, length: int, what: str) -> str:
    """``value`` as lowercase hex of exactly ``length`` digits, or :class:`InvalidHashError`."""
    if not isinstance(value, str) or len(value) != length or not _HEX_RE.fullmatch(value):
        raise InvalidHashError(f"{what} must be {length} hex digits, got {value!r:.80}")
    return value.lower()


def pdq_hex_to_words(values: Iterable[str]) -> U64Array:
    """Parse PDQ hex strings into an ``(n, 4)`` array of ``uint64`` words (word 0 = first 16 digits)."""
    raw = b"".join([_pdq_bytes(v) for v in values])
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 4)


def _pdq_bytes(value: str) -> bytes:
    """The 32 bytes of a PDQ hex string, or :class:`InvalidHashError`. ``bytes.fromhex`` (a third of the
    regex check's cost per query) skips whitespace, so 64 characters that give 32 bytes are 64 hex digits."""
    if isinstance(value, str) and len(value) == PDQ_HEX_LEN:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if len(raw) == PDQ_HEX_LEN // 2:
            return raw
    raise InvalidHashError(f"a PDQ hash must be {PDQ_HEX_LEN} hex digits, got {value!r:.80}")


def pdq_words_to_hex(words: U64Array) -> list[str]:
    """Inverse of :func:`pdq_hex_to_words`."""
    raw = np.ascontiguousarray(words, dtype=np.uint64).astype(">u8").tobytes()
    return [raw[i : i + 32].hex() for i in range(0, len(raw), 32)]


def pdq_bits_to_hex(bits: npt.ArrayLike) -> str:
    """Hex of a 256-element 0/1 vector as ``pdqhash.compute`` returns it (element 0 = most significant bit).

    pdqhash reverses the C++ ``Hash256`` bit order (bit k = bit k%16 of word k//16), so element 0 is bit 255,
    the top bit of ``w[15]``, which ``Hash256::format`` prints first. Packing the vector most significant bit
    first therefore gives exactly the reference hasher's hex, as ThreatExchange's python code also does.
    """
    vec = np.asarray(bits, dtype=np.uint8).reshape(-1)
    if vec.shape[0] != PDQ_BITS:
        raise InvalidHashError(f"a PDQ bit vector has {PDQ_BITS} elements, got {vec.shape[0]}")
    return np.packbits(vec).tobytes().hex()


def check_threshold(threshold: int, upper: int = MAX_PDQ_THRESHOLD) -> int:
    """``threshold`` if it is an int in 0..upper, else :class:`InvalidThresholdError` (a ``ValueError``)."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | np.integer):
        raise InvalidThresholdError(f"a PDQ threshold must be an integer, got {threshold!r}")
    if not 0 <= int(threshold) <= upper:
        raise InvalidThresholdError(f"a PDQ threshold must be in 0..{upper}, got {threshold}")
    return int(threshold)
