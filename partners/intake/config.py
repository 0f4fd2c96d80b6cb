"""The intake's settings: one frozen dataclass, read from the environment once."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from partners.intake.errors import ConfigError

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class IntakeSettings:
    """What an intake organisation configures; tests build it directly."""

    hub_url: str  # HASHFED_INTAKE_HUB_URL, e.g. https://hub.example.org
    client_id: str  # HASHFED_INTAKE_CLIENT_ID: the intake's OAuth client (partner kind intake)
    secret_path: str  # HASHFED_INTAKE_SECRET_FILE: the client secret, a 0600 file
    keyset_sha256: str  # HASHFED_INTAKE_KEYSET_SHA256: pin of the hub's key set, got out of band
    collection: str  # HASHFED_INTAKE_COLLECTION: the collection cases are submitted to
    data_dir: Path  # HASHFED_INTAKE_DATA_DIR: holds cases.db (case numbers, PIN hashes, case references)
    min_quality: int = 50  # a PDQ below this quality is not sent (the hub refuses it); SHA-256 still is
    max_files: int = 20  # files one case may hold
    max_pin_failures: int = 5  # wrong PINs for one case number before it locks
    lock_s: int = 900  # seconds a case number stays locked after too many wrong PINs
    address_lookups: int = 20  # look-ups one address may make per window
    address_window_s: int = 900  # seconds of that window
    exit_url: str = "https://www.bbc.co.uk/weather"  # where the quick-exit button goes
    proxy_hops: int = 0  # HASHFED_INTAKE_PROXY_HOPS: reverse proxies in front whose X-Forwarded-For is trusted

    def __post_init__(self) -> None:
        if not self.hub_url.startswith(("https://", "http://")):
            raise ConfigError("the hub URL must start with https:// (or http:// on loopback)")
        if not _HEX64.fullmatch(self.keyset_sha256):
            raise ConfigError("the key set pin must be 64 lowercase hex digits")
        if not self.client_id or not self.collection:
            raise ConfigError("the client id and the collection are required")

    @property
    def database_path(self) -> Path:
        return self.data_dir / "cases.db"

    @classmethod
    def from_env(cls) -> IntakeSettings:
        """Every HASHFED_INTAKE_* variable, named once."""
        env = os.environ
        missing = [
            name
            for name in (
                "HASHFED_INTAKE_HUB_URL",
                "HASHFED_INTAKE_CLIENT_ID",
                "HASHFED_INTAKE_SECRET_FILE",
                "HASHFED_INTAKE_KEYSET_SHA256",
                "HASHFED_INTAKE_COLLECTION",
            )
            if not env.get(name)
        ]
        if missing:
            raise ConfigError(f"set {', '.join(missing)}")
        return cls(
            hub_url=env["HASHFED_INTAKE_HUB_URL"],
            client_id=env["HASHFED_INTAKE_CLIENT_ID"],
            secret_path=env["HASHFED_INTAKE_SECRET_FILE"],
            keyset_sha256=env["HASHFED_INTAKE_KEYSET_SHA256"],
            collection=env["HASHFED_INTAKE_COLLECTION"],
            data_dir=Path(env.get("HASHFED_INTAKE_DATA_DIR", "hashfed-intake")),
            proxy_hops=int(env.get("HASHFED_INTAKE_PROXY_HOPS", "0")),
        )
