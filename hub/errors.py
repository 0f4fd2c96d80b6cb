"""The hub's exceptions: one root, each mapped to an HTTP status by the app's error handler."""

from __future__ import annotations

from typing import Any


class HubError(Exception):
    """Root of every error the hub raises on purpose."""

    status = 500
    default_message = "internal error"

    def __init__(self, message: str | None = None, *, errors: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.errors = errors
        self.headers = headers or {}


class ConfigError(HubError):
    """A setting is unknown or malformed; start-up stops."""


class BadRequestError(HubError):
    """The request is malformed."""

    status = 400
    default_message = "bad request"


class NotFoundError(HubError):
    """The resource does not exist or this caller may not know that it does."""

    status = 404
    default_message = "not found"


class ForbiddenError(HubError):
    """The caller is known but may not do this."""

    status = 403
    default_message = "forbidden"


class ConflictError(HubError):
    """The request conflicts with the current state."""

    status = 409
    default_message = "conflict"


class PayloadTooLargeError(HubError):
    """The request body or item count is over the limit."""

    status = 413
    default_message = "payload too large"


class ValidationError(HubError):
    """The request is well-formed but its content is refused; `errors` names each bad item."""

    status = 422
    default_message = "validation failed"


class ServiceUnavailableError(HubError):
    """A dependency (database, keys) is not ready."""

    status = 503
    default_message = "service unavailable"
