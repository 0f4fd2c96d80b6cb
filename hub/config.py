"""Hub settings: one frozen dataclass, every environment variable named once."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hub.errors import ConfigError
from hub.proxies import Network, parse_networks

# Variables with these names belong to other tools (tests, the partner kit) and are not hub settings.
_FOREIGN = (
    "HASHFED_TEST_", "HASHFED_REQUIRE_BROWSER", "HASHFED_PARTNER_", "HASHFED_BENCH_",
)


@dataclass(frozen=True)
class Settings:
    """Everything the hub reads from its environment; tests build it directly."""

    var_dir: Path = Path("var")
    # SQLAlchemy URL of the database the hub uses; empty means the embedded default, a private PostgreSQL
    # under var_dir/pg (hub/ops/embedded.py) that the CLI starts and fills in with the application role's URL.
    database_url: str = ""
    # The schema owner's URL, for migrations and grants; empty means database_url (an external server's
    # operator runs those as the owner). Set for the embedded server, never from the environment.
    owner_database_url: str = ""
    # True when database_url is the embedded server's: `hashfed serve` then runs one process with the jobs.
    embedded: bool = False
    # Public URL of the hub: OAuth issuer, token audience and webhook links derive from it. Fixed at
    # `hashfed init --base-url` (recorded in <var_dir>/base_url); HASHFED_BASE_URL overrides the record.
    base_url: str = "http://127.0.0.1:8000"
    # Where `hashfed serve` listens (the public name is base_url's; a proxy may stand between).
    host: str = "127.0.0.1"
    port: int = 8000
    # The hub's name: origin prefix of its logs (`<hub>/audit`, `<hub>/collections/<id>`).
    hub_name: str = ""
    log_level: str = "INFO"
    # Rate-limit storage; empty means in-process memory (fine for one process only).
    redis_url: str = ""
    # Scheduled jobs, in seconds.
    seal_interval_s: int = 60
    cosign_interval_s: int = 600
    audit_checkpoint_interval_s: int = 30
    upstream_interval_s: int = 300  # seconds between pulls of the upstream collections (hub/upstreams)
    # Largest batch the sealer writes, in entries (adds + removes).
    max_batch_entries: int = 50_000
    # Lifetime of an issued access token, in seconds.
    token_ttl_s: int = 600
    # Token endpoint rate limits (Flask-Limiter syntax): per claimed client, and per client address.
    token_rate_limit: str = "30/minute"  # noqa: S105  (a rate, not a password)
    token_rate_limit_address: str = "120/minute"  # noqa: S105
    # Console login rate limits: per login name, and per client address.
    login_rate_limit: str = "5/minute"
    login_rate_limit_address: str = "30/minute"
    # Paths of the online signing keys; empty means `<var_dir>/keys/<role>.pem`.
    keys_dir: str = ""
    # Reverse proxies (addresses or CIDR networks) whose X-Forwarded-* headers are believed; from any other
    # peer those headers are dropped (hub/proxies.py). See docs/operations.md.
    trusted_proxies: tuple[str, ...] = ()
    # How many trusted proxies stand in a row before the hub (0: one when trusted_proxies is set, else none).
    proxy_fix_hops: int = 0
    # A signal reported `false_positive` by this many different partners is flagged for governance review.
    false_positive_flag_threshold: int = 3
    # Four-eyes rule: an uphold (the hash retired everywhere) takes effect when a second staff member confirms it.
    four_eyes_uphold: bool = True
    # Networks (CIDR) webhooks may target although not public, over plain http too: tests, private deployments.
    webhook_allow: tuple[Network, ...] = ()
    # Transparency exports withhold any published count from 1 to this minus one (audit/exports.py's rule).
    export_min_cell: int = 10

    def __post_init__(self) -> None:
        if not self.hub_name:
            object.__setattr__(self, "hub_name", urlsplit(self.base_url).netloc or "localhost")
        object.__setattr__(self, "var_dir", Path(self.var_dir))
        _check(self)

    @property
    def owner_url(self) -> str:
        """Where migrations and grants run: the owner's URL, else database_url."""
        return self.owner_database_url or self.database_url

    @property
    def keys_path(self) -> Path:
        return Path(self.keys_dir) if self.keys_dir else self.var_dir / "keys"

    @property
    def token_endpoint(self) -> str:
        return self.base_url.rstrip("/") + "/oauth/token"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read HASHFED_* variables; an unknown or malformed one stops start-up with a clear message."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, raw in env.items():
            if not name.startswith("HASHFED_") or name.startswith(_FOREIGN):
                continue
            if name not in _ENV:
                known = ", ".join(sorted(_ENV))
                raise ConfigError(f"unknown setting {name}; known settings: {known}")
            attr, parse = _ENV[name]
            try:
                values[attr] = parse(raw)
            except ValueError as e:
                raise ConfigError(f"{name}={raw!r} is malformed: {e}") from e
        if "base_url" not in values:
            recorded = recorded_base_url(Path(values.get("var_dir", cls.var_dir)))
            if recorded:
                values["base_url"] = recorded
        return cls(**values)


BASE_URL_FILE = "base_url"


def recorded_base_url(var_dir: Path) -> str | None:
    """The base URL fixed at `hashfed init`, if this var folder has one."""
    try:
        return (var_dir / BASE_URL_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def record_base_url(var_dir: Path, base_url: str) -> None:
    var_dir.mkdir(parents=True, exist_ok=True)
    (var_dir / BASE_URL_FILE).write_text(base_url + "\n")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero or more")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 65535:
        raise ValueError("must be a TCP port, 1 to 65535")
    return value


def _str(raw: str) -> str:
    return raw.strip()


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ValueError("must be true or false")
    return value in ("true", "1", "yes", "on")


_RATE = re.compile(r"^\s*\d+\s*(/|per)\s*(\d+\s*)?(second|minute|hour|day)s?\s*$")

_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "HASHFED_VAR_DIR": ("var_dir", lambda raw: Path(raw)),
    "HASHFED_DATABASE_URL": ("database_url", _str),
    "HASHFED_BASE_URL": ("base_url", _str),
    "HASHFED_HUB_NAME": ("hub_name", _str),
    "HASHFED_HOST": ("host", _str),
    "HASHFED_PORT": ("port", _port),
    "HASHFED_LOG_LEVEL": ("log_level", lambda raw: raw.strip().upper()),
    "HASHFED_REDIS_URL": ("redis_url", _str),
    "HASHFED_SEAL_INTERVAL_S": ("seal_interval_s", _positive_int),
    "HASHFED_UPSTREAM_INTERVAL_S": ("upstream_interval_s", _positive_int),
    "HASHFED_COSIGN_INTERVAL_S": ("cosign_interval_s", _positive_int),
    "HASHFED_AUDIT_CHECKPOINT_INTERVAL_S": ("audit_checkpoint_interval_s", _positive_int),
    "HASHFED_MAX_BATCH_ENTRIES": ("max_batch_entries", _positive_int),
    "HASHFED_TOKEN_TTL_S": ("token_ttl_s", _positive_int),
    "HASHFED_TOKEN_RATE_LIMIT": ("token_rate_limit", _str),
    "HASHFED_TOKEN_RATE_LIMIT_ADDRESS": ("token_rate_limit_address", _str),
    "HASHFED_LOGIN_RATE_LIMIT": ("login_rate_limit", _str),
    "HASHFED_LOGIN_RATE_LIMIT_ADDRESS": ("login_rate_limit_address", _str),
    "HASHFED_KEYS_DIR": ("keys_dir", _str),
    "HASHFED_PROXY_FIX_HOPS": ("proxy_fix_hops", _non_negative_int),
    "HASHFED_TRUSTED_PROXIES": ("trusted_proxies", lambda raw: tuple(p.strip() for p in raw.split(",") if p.strip())),
    "HASHFED_FALSE_POSITIVE_FLAG_THRESHOLD": ("false_positive_flag_threshold", _positive_int),
    "HASHFED_FOUR_EYES_UPHOLD": ("four_eyes_uphold", _flag),
    "HASHFED_WEBHOOK_ALLOW": ("webhook_allow", lambda raw: parse_networks(raw.split(","))),
    "HASHFED_EXPORT_MIN_CELL": ("export_min_cell", _positive_int),
}


def _check(s: Settings) -> None:
    url = urlsplit(s.base_url)
    if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
        raise ConfigError(f"HASHFED_BASE_URL={s.base_url!r} must be an http(s) URL without query or fragment")
    if s.database_url and not s.database_url.startswith("postgresql"):
        raise ConfigError(
            f"HASHFED_DATABASE_URL={s.database_url!r}: the hub runs on PostgreSQL only (leave it unset for the "
            "embedded PostgreSQL under the var folder)"
        )
    if logging.getLevelName(s.log_level) == f"Level {s.log_level}":
        raise ConfigError(f"HASHFED_LOG_LEVEL={s.log_level!r} is not a logging level")
    if "/" in s.hub_name or not s.hub_name.strip():
        # The hub name is the first element of log origins; a slash would make origins ambiguous.
        raise ConfigError(f"HASHFED_HUB_NAME={s.hub_name!r} must not contain '/'")
    for name, value in (
        ("TOKEN_RATE_LIMIT", s.token_rate_limit),
        ("TOKEN_RATE_LIMIT_ADDRESS", s.token_rate_limit_address),
        ("LOGIN_RATE_LIMIT", s.login_rate_limit),
        ("LOGIN_RATE_LIMIT_ADDRESS", s.login_rate_limit_address),
    ):
        if not _RATE.match(value):
            raise ConfigError(f"HASHFED_{name}={value!r} must look like '30/minute'")
    try:
        parse_networks(s.trusted_proxies)
    except ValueError as e:
        raise ConfigError(f"HASHFED_TRUSTED_PROXIES={','.join(s.trusted_proxies)!r}: {e}") from e
    if s.proxy_fix_hops and not s.trusted_proxies:
        raise ConfigError(
            "HASHFED_PROXY_FIX_HOPS is set but HASHFED_TRUSTED_PROXIES is not: name the addresses the proxies "
            "connect from, or forwarded headers from anyone would be believed"
        )
    if s.redis_url and not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"HASHFED_REDIS_URL={s.redis_url!r} must be a redis:// URL")
