"""The partner kit's exceptions: one root, `PartnerError`; each names the check or step that failed.

Verification failures (`RefusedError` and below) mean the hub served something the kit does not trust; the
mirror is left exactly as it was. `audit` errors are wrapped at the boundary (`raise ... from e`).
"""

from __future__ import annotations


class PartnerError(Exception):
    """Root of every error the partner kit raises."""

    check = "error"
    """A short stable name of the failed step, for logs and `hashfed-partner status`."""


class ConfigError(PartnerError):
    """The kit's configuration is missing, malformed or points at unreadable files."""

    check = "config"


class TransportError(PartnerError):
    """The hub could not be reached, or the connection broke during a request."""

    check = "transport"


class ResponseTooLargeError(TransportError):
    """A response went past the byte cap set for its kind of download."""

    check = "byte-cap"


class HubStatusError(TransportError):
    """The hub answered with an error status."""

    check = "hub-status"

    def __init__(self, message: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RateLimitedError(HubStatusError):
    """The hub answered 429 Too Many Requests; `retry_after` holds its `Retry-After`, in seconds."""

    check = "rate-limited"


class AuthError(PartnerError):
    """The OAuth client could not obtain or renew an access token."""

    check = "auth"


class RefusedError(PartnerError):
    """The hub served something that does not verify; nothing was applied."""

    check = "refused"


class MalformedResponseError(RefusedError):
    """A response body is not the JSON or text shape the protocol defines."""

    check = "malformed"


class KeySetRefusedError(RefusedError):
    """A key set does not match the pin, breaks the rotation rule, is expired or was rolled back."""

    check = "keyset"


class DescriptorError(RefusedError):
    """A collection descriptor is not validly signed, or names another collection or origin."""

    check = "descriptor"


class CheckpointSignatureError(RefusedError):
    """A checkpoint is not signed by a checkpoint key valid for it, or carries another origin."""

    check = "checkpoint-signature"


class FreshnessError(RefusedError):
    """A checkpoint's newest cosignature is missing, too old, in the future or older than the one kept."""

    check = "freshness"


class RollbackError(RefusedError):
    """A checkpoint is smaller than the one kept: the hub tried to roll the collection back."""

    check = "rollback"


class ConsistencyProofError(RefusedError):
    """A consistency proof does not verify: a failed verification, retried; it proves nothing signed."""

    check = "consistency-proof"


class ForkError(RefusedError):
    """The hub signed two histories: another root at one size, kept as evidence (both signed items)."""

    check = "fork"

    def __init__(self, message: str, kept_note: str | None = None, served_note: str | None = None) -> None:
        super().__init__(message)
        self.kept_note = kept_note
        self.served_note = served_note


class EnvelopeError(RefusedError):
    """A batch or snapshot envelope is malformed, or not signed by a key valid at its time."""

    check = "envelope"


class BatchOrderError(RefusedError):
    """A batch names another collection, skips or repeats a seq, or does not chain to the previous one."""

    check = "batch-order"


class SnapshotError(RefusedError):
    """A snapshot or one of its chunks does not match what was signed."""

    check = "snapshot"


class WebhookError(RefusedError):
    """A webhook delivery does not carry a fresh, validly signed checkpoint of a known collection."""

    check = "webhook"


class HeldBatchError(PartnerError):
    """A batch would remove more than the allowed share of a collection and waits for `confirm`."""

    check = "held"


class HaltedError(PartnerError):
    """A collection is halted after a fork alert until an operator clears it."""

    check = "halted"


class MirrorError(PartnerError):
    """The local mirror refused a change (unknown signal removed, concurrent sync, wrong schema)."""

    check = "mirror"
