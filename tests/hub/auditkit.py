"""Builders for the audit log and key tests: a hub's keys in a temporary folder and a published key set."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from audit.keyset import ROLES
from audit.signing import Ed25519Signer
from hub.config import Settings
from hub.transparency import keys

HUB = "hub.test"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_hub_keys(
    session: Session, settings: Settings, now: datetime = T0
) -> tuple[keys.HubKeys, Ed25519Signer]:
    """Role key files, their rows, key set v1 signed by a fresh root; the loaded HubKeys."""
    keys.ensure_hub_secret(settings.keys_path)
    for role in ROLES:
        signer = keys.create_key_file(keys.role_key_path(settings.keys_path, role))
        keys.add_signing_key(session, role, signer.public_key, now)
    root = keys.create_key_file(keys.default_root_path(settings.keys_path))
    keys.publish_keyset(session, settings.hub_name, [root], now)
    session.flush()
    return keys.HubKeys.load(settings, session), root


def settings_for(url: str, tmp: Path) -> Settings:
    return Settings(var_dir=tmp / "var", database_url=url, hub_name=HUB)
