"""`hashfed client create-api-key|revoke-api-key|api-keys`: keys of the StopNCII-compatible facade (hub/compat).

Registered on the `client` group by hub/cli/main.py. A key is printed once; the hub keeps only its keyed digest.
"""

from __future__ import annotations

import click

from hub.cli.context import emit, json_option, unit_of_work
from hub.compat import service
from hub.config import Settings
from hub.transparency.auditlog import Actor
from hub.transparency.keys import ensure_hub_secret


@click.command("create-api-key")
@click.argument("partner")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(service.KEY_SCOPES),
              help="Repeat for each; default: every facade scope the partner's kind may hold.")
@click.option("--collection", default=None,
              help="Collection (id or slug) SubmitHashes adds to; needed when the partner contributes to several.")
@json_option
@click.pass_obj
def create_api_key(settings: Settings, partner: str, scopes: tuple[str, ...], collection: str | None,
                   as_json: bool) -> None:
    """Create a facade API key for PARTNER (id or name); the key is shown once."""
    with unit_of_work(settings) as session:
        issued = service.create_key(
            session, partner, scopes=list(scopes), collection=collection,
            hub_secret=ensure_hub_secret(settings.keys_path), actor=Actor.operator(),
        )
        emit(
            {"key id": issued.key.id, "partner id": issued.key.partner_id, "scopes": issued.key.scopes,
             "collection": issued.key.collection_id or "", "api key": issued.secret},
            as_json,
            note="store the API key now: it is not shown again",
        )


@click.command("revoke-api-key")
@click.argument("key_id")
@click.pass_obj
def revoke_api_key(settings: Settings, key_id: str) -> None:
    """Revoke the facade API key KEY_ID: it stops working at once."""
    with unit_of_work(settings) as session:
        row = service.revoke_key(session, key_id, actor=Actor.operator())
        click.echo(f"API key {row.id} revoked")


@click.command("api-keys")
@click.argument("partner", required=False)
@click.pass_obj
def list_api_keys(settings: Settings, partner: str | None) -> None:
    """List facade API keys (of PARTNER if given): id, partner, status, scopes."""
    with unit_of_work(settings) as session:
        for k in service.list_keys(session, partner):
            status = "revoked" if k.revoked_at is not None else "active"
            click.echo(f"{k.id}\t{k.partner_id}\t{status}\t{k.scopes}")


# Subcommands of `hashfed client` (hub/cli/main.py adds them to that group).
CLIENT_COMMANDS: tuple[click.Command, ...] = (create_api_key, revoke_api_key, list_api_keys)
