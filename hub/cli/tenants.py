"""`hashfed partner|client|user ...`: the operator manages tenants, their clients and their people.

Each command is one transaction with its audit entry (actor: the operator's CLI), run with the RLS tenant
set to `system` (hub.cli.context.unit_of_work). Secrets are printed once and never stored in plaintext.
"""

from __future__ import annotations

from pathlib import Path

import click

from hub.cli.context import emit, json_option, unit_of_work
from hub.config import Settings
from hub.governance import service as governance
from hub.identity import people, tenants
from hub.identity.models import SCOPES, PartnerKind
from hub.transparency.auditlog import Actor
from hub.transparency.keys import ensure_hub_secret


def _jwks(path: str | None) -> str | None:
    return Path(path).read_text() if path else None


@click.group("partner")
def partner_group() -> None:
    """Partners (tenants)."""


@partner_group.command("create")
@click.argument("name")
@click.option("--kind", type=click.Choice([k.value for k in PartnerKind]), required=True)
@json_option
@click.pass_obj
def partner_create(settings: Settings, name: str, kind: str, as_json: bool) -> None:
    """Create an active partner NAME of KIND. Other commands take the partner's id or its NAME."""
    with unit_of_work(settings) as session:
        partner = tenants.create_partner(session, name, kind, Actor.operator())
        emit({"partner id": partner.id, "name": partner.name, "kind": partner.kind}, as_json)


@partner_group.command("list")
@click.pass_obj
def partner_list(settings: Settings) -> None:
    """List partners: id, status, kind, name."""
    with unit_of_work(settings) as session:
        for p in tenants.list_partners(session):
            click.echo(f"{p.id}\t{p.status}\t{p.kind}\t{p.name}")


_REASON = click.option("--reason", required=True, help="Why: kept with the decision (no personal data).")


def _status_command(suspend: bool) -> click.Command:
    @click.argument("partner")
    @_REASON
    @click.pass_obj
    def command(settings: Settings, partner: str, reason: str) -> None:
        with unit_of_work(settings) as session:
            p = tenants.get_partner(session, partner)
            governance.set_partner_status(
                session, partner_id=p.id, suspend=suspend, reason=reason, staff=governance.Staff.operator()
            )
            click.echo(f"partner {p.id} {'suspended' if suspend else 'active'}")

    command.__doc__ = (
        "Suspend PARTNER (id or name): its tokens stop working at once. A governance decision with its reason."
        if suspend
        else "Resume a suspended PARTNER (a governance decision with its reason)."
    )
    return click.command("suspend" if suspend else "resume")(command)


partner_group.add_command(_status_command(True))
partner_group.add_command(_status_command(False))


@click.group("client")
def client_group() -> None:
    """OAuth clients of partners."""


@client_group.command("create")
@click.argument("partner")
@click.option("--name", default="client", show_default=True)
@click.option("--scope", "scopes", multiple=True, type=click.Choice(list(SCOPES)), required=True)
@click.option("--default-scope", "default_scopes", multiple=True, type=click.Choice(list(SCOPES)),
              help="scopes a token request without `scope` gets (default: all of --scope)")
@click.option("--jwks", type=click.Path(exists=True, dir_okay=False),
              help="public JWKS file: the client authenticates with private_key_jwt (preferred)")
@json_option
@click.pass_obj
def client_create(settings: Settings, partner: str, name: str, scopes: tuple[str, ...],
                  default_scopes: tuple[str, ...], jwks: str | None, as_json: bool) -> None:
    """Create a client of PARTNER (id or name); without --jwks a secret is printed once (client_secret_basic)."""
    with unit_of_work(settings) as session:
        issued = tenants.create_client(
            session, partner, name, list(scopes), hub_secret=ensure_hub_secret(settings.keys_path),
            actor=Actor.operator(), jwks=_jwks(jwks), default_scopes=list(default_scopes) or None,
        )
        _emit_client(issued, as_json)


def _emit_client(issued: tenants.IssuedClient, as_json: bool) -> None:
    fields: dict[str, object] = {
        "client id": issued.client.client_id,
        "partner id": issued.client.partner_id,
        "auth method": issued.client.auth_method,
    }
    if issued.secret:
        fields["client secret"] = issued.secret
    emit(fields, as_json, note="the client secret is shown once: store it now" if issued.secret else None)


@client_group.command("rotate")
@click.argument("client_id")
@click.option("--jwks", type=click.Path(exists=True, dir_okay=False), help="the new JWKS (private_key_jwt)")
@json_option
@click.pass_obj
def client_rotate(settings: Settings, client_id: str, jwks: str | None, as_json: bool) -> None:
    """Replace CLIENT_ID's secret (printed once) or JWKS."""
    with unit_of_work(settings) as session:
        issued = tenants.rotate_client(
            session, client_id, hub_secret=ensure_hub_secret(settings.keys_path), actor=Actor.operator(),
            jwks=_jwks(jwks),
        )
        _emit_client(issued, as_json)


@client_group.command("revoke")
@click.argument("client_id")
@click.pass_obj
def client_revoke(settings: Settings, client_id: str) -> None:
    """Revoke CLIENT_ID: it cannot authenticate and its tokens stop working."""
    with unit_of_work(settings) as session:
        tenants.revoke_client(session, client_id, Actor.operator())
        click.echo(f"client {client_id} revoked")


@click.group("user")
def user_group() -> None:
    """Staff users of governance and regulator partners."""


@user_group.command("create")
@click.argument("partner")
@click.argument("email")
@click.password_option(help="at least 12 characters; prompted for when not given")
@click.pass_obj
def user_create(settings: Settings, partner: str, email: str, password: str) -> None:
    """Create a user EMAIL of PARTNER (governance or regulator)."""
    with unit_of_work(settings) as session:
        user = people.create_user(session, partner, email, password, Actor.operator())
        click.echo(f"user {user.id} {user.email}")


@user_group.command("disable")
@click.argument("user")
@click.pass_obj
def user_disable(settings: Settings, user: str) -> None:
    """Disable USER (id or email): their sessions and personal tokens stop working."""
    with unit_of_work(settings) as session:
        u = people.disable_user(session, user, Actor.operator())
        click.echo(f"user {u.id} disabled")


COMMANDS: tuple[click.Command, ...] = (partner_group, client_group, user_group)
