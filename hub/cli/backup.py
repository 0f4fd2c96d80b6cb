"""`hashfed backup create` and `hashfed backup restore`: the operator's commands around hub/ops/backup.py."""

from __future__ import annotations

from pathlib import Path

import click

from hub.config import Settings
from hub.db import utcnow
from hub.errors import HubError
from hub.ops import backup


@click.group("backup")
def backup_group() -> None:
    """Back up the hub's database, and restore it with its audit log verified."""


@backup_group.command("create")
@click.option("--to", "to", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="an empty or new folder for the backup")
@click.option("--include-keys", is_flag=True,
              help="also copy the online signing keys and hub secret (never the root key); keep such a backup "
              "encrypted")
@click.pass_obj
def backup_create(settings: Settings, to: Path, include_keys: bool) -> None:
    """Write a consistent backup of the database (as its owner on PostgreSQL) with a manifest."""
    try:
        m = backup.create(settings, to, utcnow(), include_keys=include_keys)
    except HubError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"backup of {m.backend} database written to {to}")
    click.echo(f"schema {', '.join(m.schema_revision)}; {m.audit_entries} audit entries, "
               f"latest audit checkpoint at size {m.audit_tree_size}")
    if not include_keys:
        click.echo(f"keys not included: back up {settings.keys_path} separately (encrypted), the root key offline")


@backup_group.command("restore")
@click.option("--from", "source", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path), help="a folder from `backup create`")
@click.option("--checkpoint", "kept", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="a signed audit checkpoint kept from before the backup: the restored log must extend it "
              "(repeatable)")
@click.option("--keyset-sha256", default=None, metavar="DIGEST",
              help="key set v1's pin (default: the one recorded in the manifest)")
@click.option("--force", is_flag=True, help="replace a database that is not empty")
@click.pass_obj
def backup_restore(settings: Settings, source: Path, kept: tuple[Path, ...], keyset_sha256: str | None,
                   force: bool) -> None:
    """Restore a backup into an empty database, then check the schema and verify the restored audit log."""
    try:
        r = backup.restore(settings, source, utcnow(), kept=kept, keyset_sha256=keyset_sha256, force=force)
    except HubError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"restored {r.audit_entries} audit entries (tree size {r.audit_tree_size}) from {source}")
    click.echo(f"audit log: {r.verdict}")
    for kept_path in r.checked_against:
        click.echo(f"  extends {kept_path}")
    if r.problems:
        for p in r.problems:
            click.echo(f"problem: {p}", err=True)
        raise SystemExit(1)
    if not settings.embedded:  # the embedded server's role was granted by the restore
        click.echo("grant the application role again: hashfed db grant ROLE")
