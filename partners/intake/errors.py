"""The intake's errors, one root."""

from __future__ import annotations


class IntakeError(Exception):
    """Root of the intake's errors."""


class ConfigError(IntakeError):
    """The intake's settings are incomplete or invalid."""


class InvalidHashesError(IntakeError):
    """What the page sent is not a list of hashes the intake accepts."""


class HubUnavailableError(IntakeError):
    """The hub could not be reached or refused the request; nothing was stored."""


class CaseNotFoundError(IntakeError):
    """No case with this number and PIN (the two are never told apart)."""


class TooManyAttemptsError(IntakeError):
    """Too many look-ups: for this case number, or from this address."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
