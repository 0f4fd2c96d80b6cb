"""What every `hashfed` subcommand module shares: settings, the unit of work, the embedded server, output.

Subcommand modules import this module, never `hub.cli.main` (the group imports them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.orm import Session

from hub import rls
from hub.config import Settings
from hub.db import make_engine, make_session_factory
from hub.errors import ConfigError, HubError
from hub.ops import embedded


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as e:
        raise click.ClickException(str(e)) from e


@contextmanager
def unit_of_work(settings: Settings) -> Iterator[Session]:
    """One transaction for one CLI command: committed if the command succeeds."""
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine).begin() as session:
            # The operator acts for the hub: every partner's rows (documented in hub/rls.py).
            rls.set_tenant(session, rls.SYSTEM)
            yield session
    except HubError as e:
        raise click.ClickException(e.message) from e
    finally:
        engine.dispose()


@contextmanager
def embedded_server(settings: Settings) -> Iterator[embedded.EmbeddedPostgres]:
    """Start or join the private PostgreSQL under the var folder; let go of it when the command ends."""
    try:
        server = embedded.start(settings.var_dir)
    except (ConfigError, OSError, RuntimeError) as e:
        raise click.ClickException(f"the embedded PostgreSQL under {settings.var_dir}/pg did not start: {e}") from e
    try:
        yield server
    finally:
        server.close()


def emit(fields: dict[str, object], as_json: bool, note: str | None = None) -> None:
    """Print a command's result as labelled lines (`client id: ...`), or as one JSON object with --json.

    Labels are stable: scripts and the README's round trip read them. `note` is a human remark, never in JSON.
    """
    if as_json:
        click.echo(json.dumps({key.replace(" ", "_"): value for key, value in fields.items()}))
        return
    for key, value in fields.items():
        click.echo(f"{key}: {value}")
    if note:
        click.echo(note)


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
