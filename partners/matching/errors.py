"""Errors of the reference matcher: one root, so callers can catch the package's failures at once."""

from __future__ import annotations


class MatchingError(Exception):
    """Root of every error raised by ``partners.matching``."""


class InvalidHashError(MatchingError, ValueError):
    """A hash value is not well formed for its signal type (length, hex digits)."""


class InvalidThresholdError(MatchingError, ValueError):
    """A PDQ distance threshold outside 0..256, or above the 0..64 range a query may ask for."""


class UnknownSignalTypeError(MatchingError, ValueError):
    """A signal type this matcher does not index."""


class DuplicateIdError(MatchingError, ValueError):
    """The same id appears twice in one batch of adds."""


class IndexFormatError(MatchingError):
    """A saved index is corrupted, truncated, of another format version or otherwise inconsistent."""


class HashingError(MatchingError):
    """A file could not be read or decoded for hashing (carried in a result, raised only on request)."""
