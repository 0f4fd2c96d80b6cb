"""Key sets (`application/vnd.hashfed.keys.v1+json`) and their verification, in the style of python-tuf.

The root keys of a key set sign it; every other key holds roles and a validity period. A client pins the
SHA-256 of one key set payload and walks later versions forward one at a time with `TrustedKeySet.update`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from audit.canonical import canonical_json, format_time, parse_canonical, parse_time
from audit.canonical import fields as _fields
from audit.canonical import int_field as _int
from audit.dsse import Envelope, verified_keyids
from audit.errors import (
    ExpiredError,
    FormatError,
    KeySetError,
    PayloadTypeError,
    RevokedKeyError,
    RoleError,
    RotationError,
    ThresholdError,
)
from audit.merkle import b64decode, b64encode
from audit.signing import key_id

KEYS_TYPE = "application/vnd.hashfed.keys.v1+json"
ROLES = ("batch", "checkpoint", "timestamp", "audit", "export", "collection")
ROOT = "root"
MAX_EXPIRY = timedelta(days=366)
"""A key set may not expire more than a year (366 days, for leap years) after the time it is checked at."""


def _public(value: Any, keyid: str) -> bytes:
    public = b64decode(value, "public key")
    if len(public) != 32:
        raise FormatError("a public key is 32 raw Ed25519 bytes")
    if key_id(public) != keyid:
        raise KeySetError(f"key id {keyid} is not the SHA-256 of its public key")
    return public


@dataclass(frozen=True)
class KeyInfo:
    """A role key: public key, roles, and the period it may sign in."""

    public: bytes
    roles: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime | None = None
    revoked_at: datetime | None = None

    def usable_at(self, t: datetime) -> bool:
        """valid_from <= t < valid_until (if set), and never revoked.

        A revoked key counts at no time at all: the time is the payload's own claim, and whoever stole the
        key chooses it. What the key signed honestly is re-signed by its role's current key (docs/formats.md).
        """
        return (
            self.revoked_at is None
            and self.valid_from <= t
            and (self.valid_until is None or t < self.valid_until)
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "public": b64encode(self.public),
            "roles": list(self.roles),
            "valid_from": format_time(self.valid_from),
        }
        if self.valid_until is not None:
            out["valid_until"] = format_time(self.valid_until)
        if self.revoked_at is not None:
            out["revoked_at"] = format_time(self.revoked_at)
        return out

    @classmethod
    def from_dict(cls, keyid: str, data: Any) -> KeyInfo:
        d = _fields(
            data, f"key {keyid}", {"public", "roles", "valid_from"}, frozenset({"valid_until", "revoked_at"})
        )
        roles = d["roles"]
        if not isinstance(roles, list) or not roles or len(set(roles)) != len(roles):
            raise FormatError(f"key {keyid} needs a non-empty list of distinct roles")
        for r in roles:
            if r not in ROLES:
                raise FormatError(f"key {keyid} has unknown role {r!r}")
        until = parse_time(d["valid_until"]) if "valid_until" in d else None
        revoked = parse_time(d["revoked_at"]) if "revoked_at" in d else None
        return cls(_public(d["public"], keyid), tuple(roles), parse_time(d["valid_from"]), until, revoked)


@dataclass(frozen=True)
class KeySet:
    """The key set payload: root keys (key id -> public key) and threshold, role keys, role thresholds."""

    hub: str
    version: int
    expires: datetime
    root_keys: Mapping[str, bytes]
    root_threshold: int
    keys: Mapping[str, KeyInfo]
    roles: Mapping[str, int]
    payload: bytes = field(default=b"", compare=False, repr=False)

    PAYLOAD_TYPE = KEYS_TYPE

    def to_dict(self) -> dict[str, Any]:
        """The JSON form defined in docs/formats.md."""
        return {
            "hub": self.hub,
            "version": self.version,
            "expires": format_time(self.expires),
            "root": {
                "keys": {k: b64encode(v) for k, v in self.root_keys.items()},
                "threshold": self.root_threshold,
            },
            "keys": {k: v.to_dict() for k, v in self.keys.items()},
            "roles": {r: {"threshold": t} for r, t in self.roles.items()},
        }

    def to_bytes(self) -> bytes:
        """Canonical payload bytes."""
        return canonical_json(self.to_dict())

    @property
    def sha256(self) -> str:
        """The pinning digest: lowercase hex SHA-256 of the exact payload bytes."""
        return hashlib.sha256(self.payload or self.to_bytes()).hexdigest()

    @classmethod
    def from_dict(cls, data: Any, payload: bytes = b"") -> KeySet:
        """Validate and build; raise `FormatError` or `KeySetError`."""
        d = _fields(data, "key set", {"hub", "version", "expires", "root", "keys", "roles"})
        if not isinstance(d["hub"], str) or not d["hub"]:
            raise FormatError("key set hub is a non-empty string")
        root = _fields(d["root"], "key set root", {"keys", "threshold"})
        if not isinstance(root["keys"], dict) or not root["keys"]:
            raise FormatError("key set root keys is a non-empty object")
        root_keys = {k: _public(v, k) for k, v in root["keys"].items()}
        threshold = _int(root["threshold"], "root threshold", 1)
        if threshold > len(root_keys):
            raise KeySetError("root threshold exceeds the number of root keys")
        if not isinstance(d["keys"], dict) or not isinstance(d["roles"], dict):
            raise FormatError("key set keys and roles are objects")
        keys = {k: KeyInfo.from_dict(k, v) for k, v in d["keys"].items()}
        roles = {}
        for r, v in d["roles"].items():
            if r not in ROLES:
                raise FormatError(f"unknown role {r!r}")
            roles[r] = _int(_fields(v, f"role {r}", {"threshold"})["threshold"], f"role {r} threshold", 1)
        for k, info in keys.items():
            missing = set(info.roles) - set(roles)
            if missing:
                raise KeySetError(f"key {k} holds roles {sorted(missing)} that the key set does not define")
        return cls(
            d["hub"],
            _int(d["version"], "version", 1),
            parse_time(d["expires"]),
            root_keys,
            threshold,
            keys,
            roles,
            payload,
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> KeySet:
        """Parse canonical payload bytes."""
        return cls.from_dict(parse_canonical(payload), payload)

    def role_keys(self, role: str) -> dict[str, bytes]:
        """Every key listed for `role` (any time), key id -> public key; `root` gives the root keys."""
        if role == ROOT:
            return dict(self.root_keys)
        return {k: v.public for k, v in self.keys.items() if role in v.roles}

    def threshold(self, role: str) -> int:
        """How many distinct keys must sign for `role`."""
        if role == ROOT:
            return self.root_threshold
        if role not in self.roles:
            raise RoleError(f"the key set defines no role {role!r}")
        return self.roles[role]

    def check_threshold(self, signed: frozenset[str], role: str, at: datetime | None) -> None:
        """Check that keys in `signed` (already verified) reach `role`'s threshold at time `at`.

        A key counts once, only for the roles it holds, and only if usable at `at` (root keys have no
        validity period); a revoked key never counts. When the threshold fails, the most specific reason is raised.
        """
        need = self.threshold(role)
        if role == ROOT:
            counted = set(signed & set(self.root_keys))
        else:
            if at is None:
                raise FormatError(f"a time is needed to check {role} keys")
            counted = {
                k
                for k in signed
                if k in self.keys and role in self.keys[k].roles and self.keys[k].usable_at(at)
            }
        if len(counted) >= need:
            return
        role_holders = set(self.role_keys(role))
        others = signed - role_holders
        if role != ROOT and at is not None:
            holders = [self.keys[k] for k in signed & role_holders]
            revoked = [h.revoked_at for h in holders if h.revoked_at is not None]
            if revoked:
                raise RevokedKeyError(
                    f"a {role} key that signed this was revoked at {format_time(min(revoked))}; a revoked key "
                    "never counts, whatever time the payload claims"
                )
            if any(not h.usable_at(at) for h in holders):
                raise ExpiredError(f"a {role} key is outside its validity period at {format_time(at)}")
        if others:
            raise RoleError(f"{len(others)} signing key(s) do not hold the {role} role")
        raise ThresholdError(f"{len(counted)} of {need} required {role} signatures")

    def all_keys(self) -> dict[str, bytes]:
        """Every key this key set lists, root keys included."""
        out = {k: v.public for k, v in self.keys.items()}
        out.update(self.root_keys)
        return out


PAYLOAD_ROLES = {
    KEYS_TYPE: ROOT,
    "application/vnd.hashfed.collection.v1+json": "collection",
    "application/vnd.hashfed.batch.v1+json": "batch",
    "application/vnd.hashfed.snapshot.v1+json": "batch",
}
"""The role whose keys may sign each payload type."""


def role_for(payload_type: str) -> str:
    """The role that signs `payload_type`; unknown payload types raise."""
    try:
        return PAYLOAD_ROLES[payload_type]
    except KeyError:
        raise PayloadTypeError(f"unknown payload type {payload_type!r}") from None


def _open_keyset(envelope: Envelope) -> KeySet:
    if envelope.payload_type != KEYS_TYPE:
        raise PayloadTypeError(f"payload type {envelope.payload_type!r}, expected {KEYS_TYPE!r}")
    return KeySet.from_bytes(envelope.payload)


class TrustedKeySet:
    """The key set a client trusts, advanced one version at a time (as python-tuf's TrustedMetadataSet).

    Create it from the pinned version's envelope bytes and the SHA-256 of its payload (None: trust on first
    use, recorded in `trusted_on_first_use`), then `update` with each later envelope in order.
    """

    def __init__(self, envelope: bytes | Envelope, pinned_sha256: str | None = None) -> None:
        env = envelope if isinstance(envelope, Envelope) else Envelope.from_json(envelope)
        if env.payload_type != KEYS_TYPE:
            raise PayloadTypeError(f"payload type {env.payload_type!r}, expected {KEYS_TYPE!r}")
        digest = hashlib.sha256(env.payload).hexdigest()
        if pinned_sha256 is not None and digest != pinned_sha256.lower():
            raise KeySetError(f"key set payload SHA-256 {digest} does not match the pin {pinned_sha256}")
        # Signatures over the exact bytes first, then parse.
        keyset = _open_keyset(env)
        keyset.check_threshold(verified_keyids(env, keyset.root_keys), ROOT, None)
        self.trusted_on_first_use = pinned_sha256 is None
        self.keyset = keyset
        self.history: list[KeySet] = [keyset]

    def update(self, envelope: bytes | Envelope) -> KeySet:
        """Accept version N+1: a threshold of N's root keys and of its own, same hub; else raise."""
        env = envelope if isinstance(envelope, Envelope) else Envelope.from_json(envelope)
        if env.payload_type != KEYS_TYPE:
            raise PayloadTypeError(f"payload type {env.payload_type!r}, expected {KEYS_TYPE!r}")
        old = self.keyset
        try:
            old.check_threshold(verified_keyids(env, old.all_keys()), ROOT, None)
        except ThresholdError as e:
            raise RotationError(
                f"key set v{old.version + 1} lacks a threshold of v{old.version} root keys: {e}"
            ) from e
        new = _open_keyset(env)
        new.check_threshold(verified_keyids(env, new.all_keys()), ROOT, None)
        if new.version != old.version + 1:
            raise RotationError(f"key set version {new.version} does not follow {old.version}")
        if new.hub != old.hub:
            raise RotationError(f"key set hub {new.hub!r} is not {old.hub!r}")
        self.keyset = new
        self.history.append(new)
        return new

    def check_expiry(self, now: datetime) -> None:
        """Refuse a key set expired at `now`, or expiring more than a year after `now`."""
        if self.keyset.expires <= now:
            raise ExpiredError(
                f"key set v{self.keyset.version} expired at {format_time(self.keyset.expires)}"
            )
        if self.keyset.expires - now > MAX_EXPIRY:
            raise KeySetError(f"key set v{self.keyset.version} expires more than a year ahead")

    def verify(self, envelope: bytes | Envelope, payload_type: str, at: datetime) -> bytes:
        """Verify an envelope signed by its payload type's role keys usable at `at`; return the payload."""
        env = envelope if isinstance(envelope, Envelope) else Envelope.from_json(envelope)
        if env.payload_type != payload_type:
            raise PayloadTypeError(f"payload type {env.payload_type!r}, expected {payload_type!r}")
        role = role_for(payload_type)
        self.keyset.check_threshold(verified_keyids(env, self.keyset.all_keys()), role, at)
        return env.payload


def walk_keysets(envelopes: list[bytes], pinned_sha256: str | None, now: datetime | None) -> TrustedKeySet:
    """Trust `envelopes[0]` under the pin, apply every later version in order, check the final expiry."""
    if not envelopes:
        raise KeySetError("no key set")
    trusted = TrustedKeySet(envelopes[0], pinned_sha256)
    for env in envelopes[1:]:
        trusted.update(env)
    if now is not None:
        trusted.check_expiry(now)
    return trusted
