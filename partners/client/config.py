"""The kit's configuration folder: `./hashfed-partner/` or `$HASHFED_PARTNER_HOME`.

`config.json` (0600) holds the hub URL, the client id, the pinned key set digest and the limits; secrets
are referenced by path, never copied. The mirror defaults to `mirror.db` (SQLite) in the same folder.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from partners.client.errors import ConfigError
from partners.client.verify import Policy

CONFIG_FILE = "config.json"
ENV_HOME = "HASHFED_PARTNER_HOME"
DEFAULT_HOME = "hashfed-partner"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def home_dir(explicit: str | Path | None = None) -> Path:
    """The configuration folder: the option, else $HASHFED_PARTNER_HOME, else ./hashfed-partner/."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(ENV_HOME) or DEFAULT_HOME)


@dataclass(frozen=True)
class PartnerConfig:
    """Everything `enroll` stores; secrets are paths to files the operator keeps (0600)."""

    hub_url: str
    client_id: str
    keyset_sha256: str  # hex SHA-256 of the pinned key set payload (got out of band)
    key_path: str | None = None  # private JWK for private_key_jwt
    secret_path: str | None = None  # client secret for client_secret_basic
    token_url: str | None = None  # default: <hub_url>/oauth/token
    scope: str = "feed:read"
    mirror_url: str | None = None  # SQLAlchemy URL; default: sqlite:///<home>/mirror.db
    max_age_s: int = 3600  # seconds a checkpoint's newest cosignature may be old (hub re-cosigns every 5 min)
    skew_s: int = 300  # seconds of clock skew allowed
    max_removal_share: float = 0.05  # a batch removing more than this share of a collection is held
    page_limit: int = 100  # batches asked for per page (the hub serves at most 100)
    collections: tuple[str, ...] = field(default_factory=tuple)  # empty: every readable collection

    def __post_init__(self) -> None:
        if not self.hub_url.startswith(("https://", "http://")):
            raise ConfigError("the hub URL must start with https:// (or http:// on loopback)")
        if not _HEX64.fullmatch(self.keyset_sha256):
            raise ConfigError("--keyset-sha256 must be 64 lowercase hex digits")
        if (self.key_path is None) == (self.secret_path is None):
            raise ConfigError("give exactly one of --key (private_key_jwt) or --secret-file (client_secret_basic)")
        if not 0 < self.max_removal_share <= 1:
            raise ConfigError("max_removal_share is in (0, 1]")

    @property
    def auth_method(self) -> str:
        """`private_key_jwt` or `client_secret_basic`."""
        return "private_key_jwt" if self.key_path else "client_secret_basic"

    @property
    def token_endpoint(self) -> str:
        return self.token_url or self.hub_url.rstrip("/") + "/oauth/token"

    def policy(self) -> Policy:
        """The verifier's limits."""
        return Policy(self.max_age_s, self.skew_s, self.max_removal_share, self.page_limit)

    def mirror(self, home: Path) -> str:
        """The mirror's SQLAlchemy URL."""
        return self.mirror_url or f"sqlite:///{(home / 'mirror.db').resolve()}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["collections"] = list(self.collections)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> PartnerConfig:
        if not isinstance(data, dict):
            raise ConfigError("config.json must hold an object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"config.json has unknown fields {sorted(unknown)}")
        try:
            data = dict(data)
            data["collections"] = tuple(data.get("collections", ()))
            return cls(**data)
        except TypeError as e:
            raise ConfigError(f"config.json is incomplete: {e}") from e


def save(home: Path, config: PartnerConfig) -> Path:
    """Write config.json (0600) in a 0700 folder."""
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    path = home / CONFIG_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config.to_dict(), f, indent=2, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def load(home: Path) -> PartnerConfig:
    """Read config.json; a missing or malformed file is a `ConfigError`."""
    path = home / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"{path} not found: run `hashfed-partner enroll` first") from e
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} cannot be read: {e}") from e
    return PartnerConfig.from_dict(data)


def check_secret_file(path: str) -> None:
    """A secret file must exist, be readable and not be readable by group or others."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except OSError as e:
        raise ConfigError(f"{path} cannot be read: {e.strerror}") from e
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by group or others; chmod 600 it")
