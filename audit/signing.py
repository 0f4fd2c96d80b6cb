"""Ed25519 signing behind a small `Signer` interface, so that a KMS or an HSM can stand in later."""

from __future__ import annotations

import abc
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.errors import FormatError


def key_id(public_key: bytes) -> str:
    """A key's id: lowercase hex SHA-256 of the raw 32-byte Ed25519 public key."""
    return hashlib.sha256(public_key).hexdigest()


class Signer(abc.ABC):
    """Something that signs with an Ed25519 key it may never reveal."""

    @property
    @abc.abstractmethod
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""

    @property
    def key_id(self) -> str:
        """Lowercase hex SHA-256 of the raw public key."""
        return key_id(self.public_key)

    @abc.abstractmethod
    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `data`."""


class Ed25519Signer(Signer):
    """A `Signer` holding its private key in memory."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> Ed25519Signer:
        """A fresh random key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, seed: bytes) -> Ed25519Signer:
        """From the raw 32-byte private key (RFC 8032 secret key)."""
        if len(seed) != 32:
            raise FormatError("an Ed25519 private key is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_pem_file(cls, path: str | Path) -> Ed25519Signer:
        """Load an unencrypted PKCS#8 PEM private key."""
        try:
            key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        except ValueError as e:
            raise FormatError(f"{path} is not a PEM private key") from e
        if not isinstance(key, Ed25519PrivateKey):
            raise FormatError(f"{path} does not hold an Ed25519 key")
        return cls(key)

    def to_pem_file(self, path: str | Path) -> None:
        """Write the key as unencrypted PKCS#8 PEM, readable by the owner only (0600), never overwriting."""
        pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.chmod(path, 0o600)  # the umask cannot widen it, but make it explicit on odd filesystems

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


def verify_ed25519(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `data` by the raw 32-byte `public_key`."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True
