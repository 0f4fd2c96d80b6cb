"""How the kit talks to the hub: a small `Transport` interface (the I/O boundary) and its requests version.

Every download has a byte cap: responses are streamed and cut off past it (`ResponseTooLargeError`).
Tests wrap a real hub (Flask test client) or an attacker in their own `Transport`.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from partners.client.errors import (
    HubStatusError,
    MalformedResponseError,
    RateLimitedError,
    ResponseTooLargeError,
    TransportError,
)

USER_AGENT = "hashfed-partner/0.1"


@dataclass(frozen=True)
class Caps:
    """Byte caps per kind of download."""

    small: int = 1 << 20  # key sets, descriptors, checkpoints, collection lists: 1 MiB
    page: int = 64 << 20  # a page of batch envelopes: 64 MiB
    chunk: int = 32 << 20  # a snapshot chunk (50,000 signals): 32 MiB


@dataclass(frozen=True)
class Response:
    """A complete response: status, headers (lower-case names) and the body, within its cap."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON; a malformed body is a `MalformedResponseError`."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as e:
            raise MalformedResponseError(f"response is not JSON: {e}") from e

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        return self.headers.get(name.lower())


class Transport(abc.ABC):
    """Sends one request to the hub and returns the whole response, never more than `max_bytes` of body."""

    @abc.abstractmethod
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        max_bytes: int,
    ) -> Response:
        """Perform the request; raise `TransportError` if the hub cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional hook: most transports hold nothing
        """Release connections."""


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Parse `Retry-After` (delay seconds or an HTTP date) into seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def check_status(response: Response, what: str) -> Response:
    """Raise `HubStatusError` (`RateLimitedError` for 429) unless the status is 2xx."""
    if 200 <= response.status < 300:
        return response
    message = ""
    try:
        body = json.loads(response.body)
        if isinstance(body, dict):
            message = str(body.get("message") or body.get("error_description") or body.get("error") or "")
    except (ValueError, UnicodeDecodeError):
        pass
    text = f"{what}: the hub answered {response.status}" + (f" ({message[:200]})" if message else "")
    retry = retry_after_seconds(response.header("retry-after"))
    if response.status == 429:
        raise RateLimitedError(text, response.status, retry)
    raise HubStatusError(text, response.status, retry)


class RequestsTransport(Transport):
    """`Transport` over a `requests.Session` (an authlib `OAuth2Session` in production)."""

    def __init__(self, base_url: str, session: requests.Session | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        max_bytes: int,
    ) -> Response:
        response = self._once(method, path, params, json_body, max_bytes)
        fetch = getattr(self.session, "fetch", None)
        if response.status == 401 and callable(fetch):
            fetch()  # the token was revoked or the hub restarted: a new token, and the same request once more
            response = self._once(method, path, params, json_body, max_bytes)
        return response

    def _once(
        self, method: str, path: str, params: Mapping[str, Any] | None, json_body: Any, max_bytes: int
    ) -> Response:
        url = self.base_url + path
        try:
            with self.session.request(
                method,
                url,
                params=dict(params) if params else None,
                json=json_body,
                stream=True,
                timeout=self.timeout,
                headers={"User-Agent": USER_AGENT},
            ) as r:
                declared = r.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                    raise ResponseTooLargeError(f"{method} {path}: {declared} bytes announced, cap {max_bytes}")
                parts: list[bytes] = []
                total = 0
                for part in r.iter_content(chunk_size=1 << 16):
                    total += len(part)
                    if total > max_bytes:
                        raise ResponseTooLargeError(f"{method} {path}: more than {max_bytes} bytes")
                    parts.append(part)
                headers = {k.lower(): v for k, v in r.headers.items()}
                return Response(r.status_code, b"".join(parts), headers)
        except requests.RequestException as e:
            raise TransportError(f"{method} {path}: {e.__class__.__name__}") from e

    def close(self) -> None:
        self.session.close()
