"""`hashfed upstreams add|list|show|disable|enable|remove|pull|confirm`: collections fed from upstreams (hub/upstreams).

Credentials are read from files (as the partner kit reads its client secret), never from the command line, where
they would land in the shell's history and the process list; the hub stores them encrypted and never prints them.
"""

from __future__ import annotations

from pathlib import Path

import click

from hub.cli.context import emit, json_option, unit_of_work
from hub.config import Settings
from hub.db import make_engine, make_session_factory, utcnow
from hub.errors import HubError
from hub.transparency.auditlog import Actor
from hub.transparency.keys import ensure_hub_secret
from hub.upstreams import pull, service
from hub.upstreams.models import UpstreamKind


def _secret(path: str | None) -> str | None:
    if path is None:
        return None
    value = Path(path).read_text().strip()
    if not value:
        raise click.ClickException(f"{path} is empty")
    return value


@click.group("upstreams")
def upstreams_group() -> None:
    """Collections fed from an upstream hashfed hub or a StopNCII-shaped API."""


@upstreams_group.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice([k.value for k in UpstreamKind]), required=True)
@click.option("--url", required=True, help="hashfed: the upstream hub's base URL; stopncii: the API's base URL.")
@click.option("--collection", required=True, help="The local collection (id or slug) the upstream feeds.")
@click.option("--partner", default=None,
              help="Local partner (a contributor there) the hashes are contributed as; default: the owner.")
@click.option("--upstream-collection", default=None, help="hashfed: the collection id at the upstream.")
@click.option("--client-id", default=None, help="hashfed: this hub's OAuth client id at the upstream (feed:read).")
@click.option("--client-secret-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="hashfed: a file holding that client's secret.")
@click.option("--keyset-sha256", default=None, help="hashfed: SHA-256 of the upstream key set to pin (out of band).")
@click.option("--subscription-key-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="stopncii: a file holding the Ocp-Apim-Subscription-Key.")
@click.option("--functions-key-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="stopncii: a file holding the x-functions-key of FetchHashes.")
@json_option
@click.pass_obj
def add(settings: Settings, name: str, kind: str, url: str, collection: str, partner: str | None,
        upstream_collection: str | None, client_id: str | None, client_secret_file: str | None,
        keyset_sha256: str | None, subscription_key_file: str | None, functions_key_file: str | None,
        as_json: bool) -> None:
    """Add upstream NAME feeding a local collection; the scheduler pulls it from then on."""
    credentials = {
        k: v
        for k, v in {
            "client_secret": _secret(client_secret_file),
            "subscription_key": _secret(subscription_key_file),
            "functions_key": _secret(functions_key_file),
        }.items()
        if v is not None
    }
    with unit_of_work(settings) as session:
        row = service.add(
            session, name=name, kind=kind, url=url, collection=collection, partner=partner,
            credentials=credentials, hub_secret=ensure_hub_secret(settings.keys_path), actor=Actor.operator(),
            upstream_collection=upstream_collection, client_id=client_id,
            keyset_sha256=keyset_sha256.lower() if keyset_sha256 else None,
        )
        emit({"upstream id": row.id, "name": row.name, "kind": row.kind, "collection": row.collection_id}, as_json)


@upstreams_group.command("list")
@click.pass_obj
def list_cmd(settings: Settings) -> None:
    """One line per upstream: name, kind, local collection, status, position, last error."""
    with unit_of_work(settings) as session:
        for u in service.list_upstreams(session):
            click.echo(f"{u.name}\t{u.kind}\t{u.collection_id}\t{service.status_of(u)}\t{u.position}"
                       f"\t{u.last_error or ''}")


@upstreams_group.command("show")
@click.argument("name")
@json_option
@click.pass_obj
def show(settings: Settings, name: str, as_json: bool) -> None:
    """Show upstream NAME: its configuration (credentials only as set), position and last pull."""
    with unit_of_work(settings) as session:
        described = service.describe(service.get(session, name))
        emit({k.replace("_", " "): "" if v is None else str(v) for k, v in described.items()}, as_json)


def _enabled_command(enabled: bool) -> click.Command:
    """`enable` or `disable`: the same command either way."""
    word = "enabled" if enabled else "disabled"

    @click.argument("name")
    @click.pass_obj
    def command(settings: Settings, name: str) -> None:
        with unit_of_work(settings) as session:
            service.set_enabled(session, name, enabled, actor=Actor.operator())
            click.echo(f"upstream {name} {word}")

    command.__doc__ = "Pull NAME again." if enabled else "Stop pulling NAME; what it fed stays."
    return click.command("enable" if enabled else "disable")(command)


upstreams_group.add_command(_enabled_command(False))
upstreams_group.add_command(_enabled_command(True))


@upstreams_group.command("remove")
@click.argument("name")
@click.pass_obj
def remove(settings: Settings, name: str) -> None:
    """Forget NAME, its credentials and its mirror; the hashes it fed stay in the collection."""
    with unit_of_work(settings) as session:
        mirror = pull.mirror_path(settings.var_dir, service.get(session, name))
        service.remove(session, name, actor=Actor.operator())
    mirror.unlink(missing_ok=True)
    click.echo(f"upstream {name} removed")


@upstreams_group.command("pull")
@click.pass_obj
def pull_now(settings: Settings) -> None:
    """Pull every enabled upstream now (the scheduler does this every HASHFED_UPSTREAM_INTERVAL_S)."""
    engine = make_engine(settings.database_url)
    try:
        for line in pull.pull_upstreams(make_session_factory(engine), utcnow(), settings=settings):
            click.echo(line)
    except HubError as e:
        raise click.ClickException(e.message) from e
    finally:
        engine.dispose()


@upstreams_group.command("confirm")
@click.argument("name")
@click.pass_obj
def confirm(settings: Settings, name: str) -> None:
    """Let a hashfed upstream's held batch (one removing more than 5% of the collection) be applied."""
    with unit_of_work(settings) as session:
        row = service.get(session, name)
        if row.kind != UpstreamKind.HASHFED.value:
            raise click.ClickException("only a hashfed upstream holds batches")
        seq = pull.confirm_held(settings.var_dir, row)
        click.echo(f"batch {seq} of upstream {name} confirmed; the next pull applies it")
