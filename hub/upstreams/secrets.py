"""An upstream's credentials at rest: AES-256-GCM under a key derived from the hub secret.

The hub must present these credentials itself (an OAuth client secret at the upstream hub, StopNCII's keys), so
a digest will not do, as it does for the secrets partners present here. The key is an HMAC of the hub secret
under its own label; the upstream's id is the associated data, so a ciphertext copied onto another upstream
does not open. The plaintext is never logged, audited or shown: `hashfed upstreams show` says which credentials
are set, not what they are.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.errors import HubError

_LABEL = b"hashfed/upstream-credentials/v1\x00"
_NONCE = 12


class CredentialsError(HubError):
    """Stored upstream credentials do not open under this hub's secret."""

    status = 500
    default_message = "an upstream's stored credentials cannot be read"


def _key(hub_secret: bytes) -> bytes:
    return hmac.new(hub_secret, _LABEL, hashlib.sha256).digest()


def seal(hub_secret: bytes, upstream_id: str, credentials: dict[str, str]) -> bytes:
    """nonce || AES-GCM ciphertext of the credentials' JSON, bound to the upstream's id."""
    nonce = os.urandom(_NONCE)
    plain = json.dumps(credentials, sort_keys=True, separators=(",", ":")).encode()
    return nonce + AESGCM(_key(hub_secret)).encrypt(nonce, plain, upstream_id.encode())


def open_sealed(hub_secret: bytes, upstream_id: str, sealed: bytes) -> dict[str, Any]:
    """The credentials `seal` stored; `CredentialsError` if the hub secret or the row is not the one used."""
    data = bytes(sealed)
    try:
        plain = AESGCM(_key(hub_secret)).decrypt(data[:_NONCE], data[_NONCE:], upstream_id.encode())
    except (InvalidTag, ValueError) as e:
        raise CredentialsError() from e
    value = json.loads(plain)
    if not isinstance(value, dict):
        raise CredentialsError()
    return value
