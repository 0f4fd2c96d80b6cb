"""`hashfed`: the operator's command line, one click group. Its own commands set the hub up and serve it
(`init`, `db ...`, `serve`); the others come from the subcommand modules beside it."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from hub.app import create_app
from hub.cli import audit as audit_cli
from hub.cli import backup as backup_cli
from hub.cli import compat as compat_cli
from hub.cli import exports as exports_cli
from hub.cli import feed as feed_cli
from hub.cli import governance as governance_cli
from hub.cli import tenants as tenant_cli
from hub.cli import upstreams as upstreams_cli
from hub.cli.context import embedded_server, load_settings
from hub.config import Settings, record_base_url, recorded_base_url
from hub.db import make_engine
from hub.errors import ConfigError
from hub.ops import embedded, migrate, serving
from hub.ops.dbroles import ensure_role, grant_app_role, set_password


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Operate a hashfed hub. Settings come from HASHFED_* environment variables (docs/operations.md)."""
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.database_url and ctx.invoked_subcommand and not {"--help", "-h"} & set(sys.argv):
        # The embedded default: this command starts or joins the private server and lets go of it at its end.
        server = ctx.with_resource(embedded_server(settings))
        settings = settings.replace(
            database_url=server.app_url, owner_database_url=server.owner_url, embedded=True
        )
    ctx.obj = settings


def _migrate(settings: Settings, revision: str = "heads") -> None:
    """Apply migrations as the owner; on the embedded server also grant the hub's role (production runs
    `hashfed db grant` itself, as the operator decides the role)."""
    migrate.upgrade(settings.owner_url, revision)
    if settings.embedded:
        embedded.grant_app_role(settings.owner_url)


@main.command()
@click.option("--base-url", default=None, help="the hub's public URL, fixed in its key set "
              "(default: HASHFED_BASE_URL, else http://HASHFED_HOST:HASHFED_PORT)")
@click.option("--root", "root_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="the root key, read or made here (default: under the keys folder; keep it offline)")
@click.pass_obj
def init(settings: Settings, base_url: str | None, root_path: Path | None) -> None:
    """Create the var folder and database, apply migrations, make the keys. Safe to run again."""
    settings = _with_base_url(settings, base_url)
    first = recorded_base_url(settings.var_dir) is None
    if first and serving.is_local(settings.base_url):
        host, port = serving.host_port(settings.base_url)
        if serving.port_in_use(host, port):
            raise click.ClickException(
                f"port {port} on {host} is in use by another program; choose another before the hub is made: "
                f"`make run PORT=<port>` or `hashfed init --base-url http://{host}:<port>`"
            )
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    _migrate(settings)
    where = f"the embedded PostgreSQL in {settings.var_dir / embedded.PG_DIR}" if settings.embedded else None
    click.echo(f"database ready: {where or _redact(settings.database_url)}")
    audit_cli.init_keys(settings, root_path)
    record_base_url(settings.var_dir, settings.base_url)
    click.echo(f"base URL: {settings.base_url}  (hub name {settings.hub_name}, fixed in the key set)")


def _with_base_url(settings: Settings, base_url: str | None) -> Settings:
    """Settings under the base URL given to `init`; the hub name follows it unless HASHFED_HUB_NAME is set."""
    if base_url is None or base_url == settings.base_url:
        return settings
    try:
        return settings.replace(base_url=base_url, hub_name=os.environ.get("HASHFED_HUB_NAME", ""))
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint="--base-url") from e


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="heads", show_default=True)
@click.pass_obj
def db_upgrade(settings: Settings, revision: str) -> None:
    """Apply migrations up to REVISION (as the schema's owner)."""
    _migrate(settings, revision)
    click.echo(f"upgraded {_redact(settings.owner_url)} to {revision}")


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
@click.option("--password-env", metavar="NAME", default=None,
              help="set the role's password from environment variable NAME (never on the command line)")
@click.pass_obj
def db_grant(settings: Settings, role: str, create: bool, password_env: str | None) -> None:
    """Grant the application ROLE what the serving hub needs (PostgreSQL). Run after every upgrade."""
    password = None
    if password_env is not None:
        password = os.environ.get(password_env, "")
        if not password:
            raise click.BadParameter(f"environment variable {password_env} is empty or unset",
                                     param_hint="--password-env")
    engine = make_engine(settings.owner_url)
    try:
        with engine.begin() as conn:
            if create:
                ensure_role(conn, role)
            if password is not None:
                set_password(conn, role, password)
            grant_app_role(conn, role)
    finally:
        engine.dispose()
    click.echo(f"granted {role} the application privileges")


@main.command()
@click.option("--host", default=None, help="address to listen on (default: HASHFED_HOST, 127.0.0.1)")
@click.option("--port", default=None, type=click.IntRange(1, 65535),
              help="port to listen on (default: HASHFED_PORT, 8000)")
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn workers (PostgreSQL only)")
@click.option("--threads", default=8, show_default=True, type=int)
@click.pass_obj
def serve(settings: Settings, host: str | None, port: int | None, workers: int, threads: int) -> None:
    """Serve the API: one threaded process with the jobs on the embedded default, else gunicorn workers.

    Refused before anything runs when the port is taken or the hub's name is not its key set's.
    """
    host = host or settings.host
    port = port or settings.port
    pin = audit_cli.check_serving_name(settings)
    if serving.port_in_use(host, port):
        raise click.ClickException(
            f"port {port} on {host} is in use; is the hub already running? Listen on another with "
            f"--port or HASHFED_PORT (the public name stays {settings.base_url})"
        )

    def ready() -> None:
        base = settings.base_url.rstrip("/")
        click.echo(f"hashfed hub serving {base} (listening on {host}:{port})")
        click.echo(f"API docs: {base}/docs  OpenAPI: {base}/openapi.json")
        click.echo(f"key set v1 SHA-256 (partners pin this): {pin}")
        click.echo("print it again with: hashfed keys show --pin")

    if settings.embedded:
        serving.serve_embedded(create_app, settings, host, port, threads, ready=ready)
    else:
        serving.serve_gunicorn(create_app, settings, host, port, workers, threads, ready=ready)


def _redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


for _group in (audit_cli.keys_group, audit_cli.audit_group, backup_cli.backup_group, upstreams_cli.upstreams_group):
    main.add_command(_group)
for _command in (*tenant_cli.COMMANDS, *feed_cli.COMMANDS, *governance_cli.COMMANDS, *exports_cli.COMMANDS):
    main.add_command(_command)
for _command in compat_cli.CLIENT_COMMANDS:  # `hashfed client create-api-key ...`: the facade's keys
    tenant_cli.client_group.add_command(_command)

if __name__ == "__main__":
    main()
