"""The hub's keys: online signing keys (one Ed25519 key per role), the hub secret, and signed key sets.

Private keys live in files under `settings.keys_path` (folder 0700, files 0600), never in the database.
The database holds the public half of each key (`signing_keys`) and every signed key set version
(`key_sets`, append-only). The root key signs key sets only; the serving hub never loads it.
Other services use `HubKeys`: `signer(role)`, `keyset()`, `keyed_digest(value)`. A serving process holds
them through `serving_keys`, which reloads them when a newer key set is published (a rotation or a
revocation takes effect at the next request, without a restart).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit.dsse import Envelope, sign_envelope
from audit.errors import VerificationError
from audit.keyset import KEYS_TYPE, ROLES, KeyInfo, KeySet, TrustedKeySet
from audit.signing import Ed25519Signer, Signer, key_id
from hub.config import Settings
from hub.errors import ConflictError, HubError, NotFoundError, ServiceUnavailableError
from hub.transparency.models import KeySetRecord, SigningKey

# A key set is valid this long after it is signed (audit.keyset refuses more than 366 days).
KEYSET_LIFETIME = timedelta(days=365)
# Readiness warns this long before the key set expires.
EXPIRY_WARNING = timedelta(days=30)
HUB_SECRET_FILE = "hub-secret.key"  # noqa: S105  (a file name, not a secret)
ROOT_DIR = "root"


class KeysError(HubError):
    """A key file or key set is missing, unreadable or does not match the database."""

    status = 503
    default_message = "signing keys are not ready"


def whole_second(t: datetime) -> datetime:
    """Key set times have whole seconds; store exactly what is signed."""
    return t.astimezone(UTC).replace(microsecond=0)


def keyed_digest(secret: bytes, value: str | bytes) -> str:
    """Lowercase hex HMAC-SHA256 of a (normalized) hash value under the hub secret.

    Lets an audit entry or report refer to a value without revealing it; only the hub can recompute it.
    """
    data = value.encode() if isinstance(value, str) else value
    return hmac.new(secret, b"hashfed/keyed-digest/v1\x00" + data, hashlib.sha256).hexdigest()


# --- files ---------------------------------------------------------------------------------------------


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def role_key_path(keys_path: Path, role: str) -> Path:
    return keys_path / f"{role}.pem"


def default_root_path(keys_path: Path) -> Path:
    return keys_path / ROOT_DIR / "root.pem"


def load_signer(path: Path) -> Ed25519Signer:
    try:
        return Ed25519Signer.from_pem_file(path)
    except FileNotFoundError as e:
        raise KeysError(f"key file {path} is missing; run `hashfed init`") from e
    except (OSError, VerificationError) as e:
        raise KeysError(f"key file {path} cannot be read: {e}") from e


def create_key_file(path: Path) -> Ed25519Signer:
    """A fresh Ed25519 key written to `path` (0600) in a 0700 folder; never overwrites."""
    _private_dir(path.parent)
    if path.exists():
        raise ConflictError(f"{path} exists; refusing to overwrite a key")
    signer = Ed25519Signer.generate()
    signer.to_pem_file(path)
    return signer


def ensure_hub_secret(keys_path: Path) -> bytes:
    """The hub secret for keyed digests: 32 random bytes, created once."""
    path = _private_dir(keys_path) / HUB_SECRET_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    return load_hub_secret(keys_path)


def load_hub_secret(keys_path: Path) -> bytes:
    path = keys_path / HUB_SECRET_FILE
    try:
        secret = bytes.fromhex(path.read_text().strip())
    except FileNotFoundError as e:
        raise KeysError(f"hub secret {path} is missing; run `hashfed init`") from e
    except (OSError, ValueError) as e:
        raise KeysError(f"hub secret {path} is not 64 hex digits") from e
    if len(secret) != 32:
        raise KeysError(f"hub secret {path} is not 32 bytes")
    return secret


# --- database ------------------------------------------------------------------------------------------


def latest_record(session: Session) -> KeySetRecord | None:
    return session.scalars(select(KeySetRecord).order_by(KeySetRecord.version.desc()).limit(1)).first()


def keyset_record(session: Session, version: int) -> KeySetRecord:
    row = session.get(KeySetRecord, version)
    if row is None:
        raise NotFoundError(f"no key set version {version}")
    return row


def all_envelopes(session: Session) -> list[bytes]:
    """Every key set envelope, version 1 first (what a verifier walks)."""
    return [bytes(e) for e in session.scalars(select(KeySetRecord.envelope).order_by(KeySetRecord.version))]


def latest_version(session: Session) -> int | None:
    """The newest key set version (one index lookup: what a serving process compares its keys with)."""
    return session.scalar(select(func.max(KeySetRecord.version)))


def current_key_ids(keyset: KeySet, role: str) -> set[str]:
    """The keys `keyset` lists for `role` that are neither retired (`valid_until`) nor revoked."""
    return {
        k
        for k, info in keyset.keys.items()
        if role in info.roles and info.valid_until is None and info.revoked_at is None
    }


def current_keyset(session: Session) -> KeySet:
    row = latest_record(session)
    if row is None:
        raise KeysError("no key set is published; run `hashfed init`")
    return KeySet.from_bytes(Envelope.from_json(row.envelope).payload)


def add_signing_key(session: Session, role: str, public_key: bytes, now: datetime) -> SigningKey:
    """List a new online key for `role`, valid from `now` (published with the next key set)."""
    if role not in ROLES:
        raise HubError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    row = SigningKey(
        key_id=key_id(public_key), role=role, public_key=public_key, valid_from=whole_second(now)
    )
    session.add(row)
    session.flush()
    return row


def active_key(session: Session, role: str) -> SigningKey | None:
    return session.scalars(
        select(SigningKey)
        .where(SigningKey.role == role, SigningKey.valid_until.is_(None), SigningKey.revoked_at.is_(None))
        .order_by(SigningKey.valid_from.desc())
        .limit(1)
    ).first()


def stage_key_file(keys_path: Path, role: str) -> tuple[Ed25519Signer, Path]:
    """A fresh key for `role` written beside its key file (`<role>.pem.new`), put in place once committed."""
    staged = role_key_path(keys_path, role).with_suffix(".pem.new")
    staged.unlink(missing_ok=True)  # a rotation that failed before its commit
    return create_key_file(staged), staged


def install_staged_key(keys_path: Path, role: str, staged: Path, old_key_id: str | None) -> None:
    """Put a staged key in place of `role`'s key file, keeping the old file as `<role>.<id>.retired.pem`."""
    path = role_key_path(keys_path, role)
    if path.exists() and old_key_id is not None:
        path.rename(path.with_name(f"{role}.{old_key_id[:16]}.retired.pem"))
    staged.rename(path)


def rotate_key(
    session: Session, hub_name: str, role: str, new_public: bytes, root_signers: Sequence[Signer], now: datetime
) -> tuple[SigningKey, SigningKey | None, KeySetRecord]:
    """Retire `role`'s current key (from the next whole second), list `new_public`, publish the next key set.

    Returns (new key, retired key or None, key set). Serving processes take the new key at their next request
    once its file is in place (`install_staged_key`); the scheduler at its next run.
    """
    old = active_key(session, role)
    if old is not None:
        # Entry times are whole seconds rounded down: end the old key at the next whole second so
        # checkpoints it signed over entries of this second stay valid.
        old.valid_until = whole_second(now) + timedelta(seconds=1)
    new = add_signing_key(session, role, new_public, now)
    row = publish_keyset(session, hub_name, root_signers, now)
    return new, old, row


def build_keyset(
    session: Session, hub: str, version: int, root_keys: Sequence[bytes], root_threshold: int, now: datetime
) -> KeySet:
    """The key set payload listing every signing key (retired ones too: old envelopes stay verifiable)."""
    keys = {
        k.key_id: KeyInfo(k.public_key, (k.role,), k.valid_from, k.valid_until, k.revoked_at)
        for k in session.scalars(select(SigningKey).order_by(SigningKey.valid_from, SigningKey.key_id))
    }
    return KeySet(
        hub=hub,
        version=version,
        expires=whole_second(now) + KEYSET_LIFETIME,
        root_keys={key_id(k): k for k in root_keys},
        root_threshold=root_threshold,
        keys=keys,
        roles={r: 1 for r in ROLES},
    )


def publish_keyset(
    session: Session,
    hub: str,
    signers: Sequence[Signer],
    now: datetime,
    *,
    new_roots: Sequence[bytes] | None = None,
    root_threshold: int | None = None,
) -> KeySetRecord:
    """Sign and store the next key set version with `signers` (root keys).

    Version N+1 keeps N's root keys unless `new_roots` is given; it is stored only if it passes the
    rotation rule a partner applies (`TrustedKeySet.update`: a threshold of N's root keys and of its own).
    """
    previous = latest_record(session)
    old = None if previous is None else KeySet.from_bytes(Envelope.from_json(previous.envelope).payload)
    if old is not None and old.hub != hub:
        raise ConflictError(f"the key sets are for hub {old.hub!r}, settings say {hub!r}")
    if new_roots:
        roots = list(new_roots)
    else:
        roots = list(old.root_keys.values()) if old else [s.public_key for s in signers]
    threshold = root_threshold or (old.root_threshold if old and not new_roots else 1)
    keyset = build_keyset(session, hub, 1 if old is None else old.version + 1, roots, threshold, now)
    payload = keyset.to_bytes()
    envelope = sign_envelope(KEYS_TYPE, payload, list(signers)).to_json()
    try:
        if previous is None:
            TrustedKeySet(envelope, hashlib.sha256(payload).hexdigest())
        else:
            TrustedKeySet(previous.envelope).update(envelope)
    except VerificationError as e:
        raise ConflictError(f"key set v{keyset.version} would not verify: {e}") from e
    row = KeySetRecord(
        version=keyset.version,
        envelope=envelope,
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


# --- what services use ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubKeys:
    """The serving hub's keys, loaded once: one online signer per role, the hub secret, the key set."""

    hub_name: str
    signers: dict[str, Signer]
    hub_secret: bytes
    current: KeySet

    @classmethod
    def load(cls, settings: Settings, session: Session) -> HubKeys:
        """Load role keys and hub secret from `settings.keys_path` and the latest key set, and check them."""
        keyset = current_keyset(session)
        if keyset.hub != settings.hub_name:
            raise KeysError(name_mismatch(keyset.hub, settings.hub_name))
        signers: dict[str, Signer] = {}
        for role in ROLES:
            signer = load_signer(role_key_path(settings.keys_path, role))
            info = keyset.keys.get(signer.key_id)
            if info is None or role not in info.roles:
                raise KeysError(
                    f"the {role} key in {settings.keys_path} is not in key set v{keyset.version}; "
                    "run `hashfed keys publish`"
                )
            if signer.key_id not in current_key_ids(keyset, role):
                # What it signed now would not verify: a retired key is outside its period, a revoked one never
                # counts. Seen for a moment while `keys rotate`/`revoke` swaps the file after its commit.
                state = "revoked" if info.revoked_at else "retired"
                raise KeysError(
                    f"the {role} key in {settings.keys_path} is {state} in key set v{keyset.version}, not its "
                    f"current {role} key; put the current key file in place (`hashfed keys rotate {role}`)"
                )
            signers[role] = signer
        return cls(settings.hub_name, signers, load_hub_secret(settings.keys_path), keyset)

    def signer(self, role: str) -> Signer:
        try:
            return self.signers[role]
        except KeyError:
            raise ServiceUnavailableError(f"no {role} key loaded") from None

    def keyset(self) -> KeySet:
        return self.current

    def keyed_digest(self, value: str | bytes) -> str:
        return keyed_digest(self.hub_secret, value)

    @property
    def audit_origin(self) -> str:
        return f"{self.hub_name}/audit"


SERVING_KEYS = "hub_keys"  # where `serving_keys` keeps a process's keys in its services


def serving_keys(services: dict[str, Any], settings: Settings, session: Session) -> HubKeys:
    """The process's keys, loaded again whenever the latest key set is not the one they were loaded with.

    One index lookup per call: a rotation or revocation (a new key set version) takes effect at the next
    request that signs, in every replica, without a restart. Keys that fail to load are not kept.
    """
    held: HubKeys | None = services.get(SERVING_KEYS)
    if held is not None and held.current.version == latest_version(session):
        return held
    loaded = HubKeys.load(settings, session)
    services[SERVING_KEYS] = loaded
    return loaded


def name_mismatch(keyset_hub: str, hub_name: str) -> str:
    """Why a hub may not serve under another name than its key set's (every origin would fail to verify)."""
    return (
        f"the key set names this hub {keyset_hub!r} but it is configured as {hub_name!r}: every log origin "
        f"would name a hub no verifier accepts. Serve it under the base URL given to `hashfed init` "
        f"(host:port {keyset_hub}), or set HASHFED_HUB_NAME={keyset_hub} when a proxy serves it under another "
        f"URL; another name needs a new hub (another HASHFED_VAR_DIR and database)"
    )


def expiry_problem(keyset: KeySet, now: datetime) -> tuple[str | None, str | None]:
    """(problem, warning) for readiness: expired is a problem, expiring within 30 days a warning."""
    if keyset.expires <= now:
        return f"key set v{keyset.version} expired at {keyset.expires.isoformat()}", None
    if keyset.expires - now <= EXPIRY_WARNING:
        expires = keyset.expires.isoformat()
        return None, f"key set v{keyset.version} expires at {expires}; run `hashfed keys publish`"
    return None, None


def readiness(
    settings: Settings, session: Session, now: datetime, services: dict[str, Any] | None = None
) -> tuple[str | None, str | None]:
    """(problem, warning) about the keys for /readyz.

    No key set at all is only a warning (a database migrated but not yet `hashfed init`-ed); a key set
    whose role key files are missing, not listed, or not the current keys of their roles (retired or
    revoked), or an expired key set, is a problem. With `services`, the keys this process signs with are
    checked (and reloaded if a newer key set was published), else the key files.
    """
    if latest_record(session) is None:
        return None, "no key set published; run `hashfed init`"
    try:
        if services is None:
            loaded = HubKeys.load(settings, session)
        else:
            loaded = serving_keys(services, settings, session)
    except KeysError as e:
        return e.message, None
    return expiry_problem(loaded.keyset(), now)
