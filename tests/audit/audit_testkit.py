"""Builders shared by the audit tests: key sets, keys and signed envelopes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from audit.dsse import sign_envelope
from audit.keyset import KEYS_TYPE
from audit.merkle import b64encode
from audit.signing import Ed25519Signer, Signer

NOW = datetime(2025, 6, 1, tzinfo=UTC)
HUB = "hub.example.org"


def seeded(n: int) -> Ed25519Signer:
    return Ed25519Signer.from_private_bytes(bytes([n]) * 32)


def keyset_dict(
    version: int,
    roots: Sequence[Signer],
    role_keys: dict[str, tuple[Signer, list[str]]] | None = None,
    *,
    threshold: int = 1,
    expires: datetime = NOW + timedelta(days=200),
    extra: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for _name, (signer, roles) in (role_keys or {}).items():
        keys[signer.key_id] = {
            "public": b64encode(signer.public_key),
            "roles": roles,
            "valid_from": "2025-01-01T00:00:00Z",
        }
        keys[signer.key_id].update((extra or {}).get(_name, {}))
    return {
        "hub": HUB,
        "version": version,
        "expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "root": {"keys": {s.key_id: b64encode(s.public_key) for s in roots}, "threshold": threshold},
        "keys": keys,
        "roles": {
            r: {"threshold": 1} for r in ("batch", "checkpoint", "timestamp", "audit", "export", "collection")
        },
    }


def signed_keyset(data: dict[str, Any], signers: Sequence[Signer]) -> bytes:
    from audit.canonical import canonical_json

    return sign_envelope(KEYS_TYPE, canonical_json(data), signers).to_json()
