"""`hashfed`: the operator's command line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.orm import Session

from hub import audit_cli, migrate, rls
from hub.config import Settings
from hub.db import make_engine, make_session_factory
from hub.errors import ConfigError, HubError


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


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Operate a hashfed hub. Settings come from HASHFED_* environment variables (docs/operations.md)."""
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = settings


@main.command()
@click.pass_obj
def init(settings: Settings) -> None:
    """Create the var folder and database, apply migrations. Safe to run again."""
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.database_url)
    click.echo(f"database ready at {_redact(settings.database_url)}")
    audit_cli.init_keys(settings)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="heads", show_default=True)
@click.pass_obj
def db_upgrade(settings: Settings, revision: str) -> None:
    """Apply migrations up to REVISION."""
    migrate.upgrade(settings.database_url, revision)
    click.echo(f"upgraded {_redact(settings.database_url)} to {revision}")


@db.command("current")
@click.pass_obj
def db_current(settings: Settings) -> None:
    """Print the database's revision and whether it is at the head."""
    engine = make_engine(settings.database_url)
    try:
        current = migrate.current_revisions(engine)
        problem = migrate.schema_status(engine)
    finally:
        engine.dispose()
    click.echo(f"current: {', '.join(current) or '(none)'}")
    click.echo(f"head:    {', '.join(migrate.heads())}")
    if problem:
        click.echo(problem)
        sys.exit(1)


@db.command("grant")
@click.argument("role")
@click.option("--create", is_flag=True, help="create the login role first if it does not exist")
@click.pass_obj
def db_grant(settings: Settings, role: str, create: bool) -> None:
    """Grant the application ROLE what the serving hub needs (PostgreSQL). Run after every upgrade."""
    from hub.dbroles import ensure_role, grant_app_role

    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            if create:
                ensure_role(conn, role)
            grant_app_role(conn, role)
    finally:
        engine.dispose()
    click.echo(f"granted {role} the application privileges")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn workers (PostgreSQL only)")
@click.option("--threads", default=8, show_default=True, type=int)
@click.pass_obj
def serve(settings: Settings, host: str, port: int, workers: int, threads: int) -> None:
    """Serve the API: one threaded process on SQLite, gunicorn workers on PostgreSQL."""
    from hub.serving import serve_embedded, serve_gunicorn

    click.echo(f"hashfed hub on http://{host}:{port}  (API docs: http://{host}:{port}/docs,"
               f" OpenAPI: http://{host}:{port}/openapi.json)")
    if settings.is_sqlite:
        serve_embedded(settings, host, port, threads)
    else:
        serve_gunicorn(settings, host, port, workers, threads)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


main.add_command(audit_cli.keys_group)
main.add_command(audit_cli.audit_group)

from hub import tenant_cli  # noqa: E402  (imports unit_of_work from this module)

for _command in tenant_cli.COMMANDS:
    main.add_command(_command)

from hub import feed_cli  # noqa: E402  (imports unit_of_work from this module)

for _command in feed_cli.COMMANDS:
    main.add_command(_command)

if __name__ == "__main__":
    main()
