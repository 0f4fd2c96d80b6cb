"""The feed's operator commands: `hashfed seal`, `cosign`, `collections ...` and `scheduler`."""

from __future__ import annotations

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import rls
from hub.cli.context import emit, json_option, unit_of_work
from hub.config import Settings
from hub.db import make_engine, make_session_factory, utcnow
from hub.errors import HubError
from hub.feed import batches, collections
from hub.governance import service as governance
from hub.identity import tenants
from hub.ops import jobs
from hub.ops.scheduler import run_forever
from hub.transparency.auditlog import Actor
from hub.transparency.keys import HubKeys


def _keys(settings: Settings, session: Session) -> HubKeys:
    try:
        return HubKeys.load(settings, session)
    except HubError as e:
        raise click.ClickException(e.message) from e


@click.command()
@click.pass_obj
def seal(settings: Settings) -> None:
    """Seal every collection's pending changes into signed batches now."""
    engine = make_engine(settings.database_url)
    try:
        factory = make_session_factory(engine)
        with factory() as s:
            hk = _keys(settings, s)
        try:
            sealed = jobs.seal_pending(factory, utcnow(), keys=hk, settings=settings)
        except HubError as e:
            raise click.ClickException(e.message) from e
    finally:
        engine.dispose()
    for r in sealed:
        click.echo(
            f"{r.collection_id}: sealed seq {r.seqs[0]}..{r.seqs[-1]} (+{r.adds} -{r.removes}), size {r.size}"
        )
    if not sealed:
        click.echo("nothing pending")


@click.command()
@click.pass_obj
def cosign(settings: Settings) -> None:
    """Refresh stale checkpoint cosignatures now."""
    engine = make_engine(settings.database_url)
    try:
        factory = make_session_factory(engine)
        with factory() as s:
            hk = _keys(settings, s)
        n = jobs.refresh_cosignatures(factory, utcnow(), keys=hk, settings=settings)
    finally:
        engine.dispose()
    click.echo(f"cosigned {n} checkpoints")


@click.group("collections")
def collections_group() -> None:
    """Collections (banks): create them and change who may read or contribute."""


@collections_group.command("create")
@click.argument("slug")
@click.option("--owner", required=True, help="the owner partner's id or name")
@click.option("--category", default="ncii", show_default=True)
@click.option("--types", default="pdq,md5,sha256", show_default=True, help="comma-separated signal types")
@click.option("--pdq-threshold", default=31, show_default=True, type=int)
@click.option("--min-quality", default=50, show_default=True, type=int)
@click.option("--vpdq-percent", default=80, show_default=True, type=int, help="P of the vPDQ rule, 1..100")
@click.option("--description", default="")
@json_option
@click.pass_obj
def create(
    settings: Settings,
    slug: str,
    owner: str,
    category: str,
    types: str,
    pdq_threshold: int,
    min_quality: int,
    vpdq_percent: int,
    description: str,
    as_json: bool,
) -> None:
    """Create a collection SLUG owned by OWNER (who may read and contribute)."""
    with unit_of_work(settings) as session:
        rls.set_tenant(session, rls.SYSTEM)
        hk = _keys(settings, session)
        c = collections.create_collection(
            session,
            slug=slug,
            owner_id=tenants.get_partner(session, owner).id,
            category=category,
            signal_types=types.split(","),
            pdq_threshold=pdq_threshold,
            min_quality=min_quality,
            vpdq_percent=vpdq_percent,
            actor=Actor.operator(),
            hub_name=settings.hub_name,
            signer=hk.signer("collection"),
            description=description,
        )
        # A readable collection always has a checkpoint: a signed, cosigned one of size 0 from the start.
        signers = batches.Signers(hk.signer("batch"), hk.signer("checkpoint"), hk.signer("timestamp"))
        batches.ensure_head(
            session, c.id, hub_name=settings.hub_name, signers=signers, now=utcnow().replace(microsecond=0)
        )
        emit({"collection id": c.id, "slug": c.slug, "owner": c.owner_id}, as_json)


@collections_group.command("settings")
@click.argument("collection")
@click.option("--types", default=None, help="comma-separated signal types")
@click.option("--pdq-threshold", default=None, type=int)
@click.option("--min-quality", default=None, type=int)
@click.option("--vpdq-percent", default=None, type=int, help="P of the vPDQ rule, 1..100")
@json_option
@click.pass_obj
def settings_(
    settings: Settings,
    collection: str,
    types: str | None,
    pdq_threshold: int | None,
    min_quality: int | None,
    vpdq_percent: int | None,
    as_json: bool,
) -> None:
    """Change COLLECTION's matching settings (audited; its descriptor is signed again)."""
    with unit_of_work(settings) as session:
        rls.set_tenant(session, rls.SYSTEM)
        hk = _keys(settings, session)
        c = collections.update_settings(
            session,
            collections.get(session, collection).id,
            actor=Actor.operator(),
            hub_name=settings.hub_name,
            signer=hk.signer("collection"),
            signal_types=types.split(",") if types is not None else None,
            pdq_threshold=pdq_threshold,
            min_quality=min_quality,
            vpdq_percent=vpdq_percent,
        )
        emit(
            {
                "collection id": c.id,
                "types": c.signal_types,
                "pdq threshold": c.pdq_threshold,
                "min quality": c.min_quality,
                "vpdq percent": c.vpdq_percent,
                "descriptor version": c.descriptor_version,
            },
            as_json,
        )


@collections_group.command("list")
@click.pass_obj
def list_(settings: Settings) -> None:
    """Every collection with its readers and contributors."""
    with unit_of_work(settings) as session:
        for c in session.scalars(select(collections.Collection).order_by(collections.Collection.slug)):
            m = collections.members(session, c.id)
            click.echo(
                f"{c.id}  {c.slug}  {c.category}  types={c.signal_types}  readers={len(m['reader'])}"
                f"  contributors={len(m['contributor'])}  descriptor v{c.descriptor_version}"
                f"  pdq_threshold={c.pdq_threshold}  vpdq_percent={c.vpdq_percent}"
            )


def _access_command(granted: bool) -> click.Command:
    @click.argument("collection")
    @click.argument("partner")
    @click.option("--access", type=click.Choice([a.value for a in collections.Access]), required=True)
    @click.option("--reason", required=True, help="Why: kept with the decision (no personal data).")
    @click.pass_obj
    def command(settings: Settings, collection: str, partner: str, access: str, reason: str) -> None:
        with unit_of_work(settings) as session:
            rls.set_tenant(session, rls.SYSTEM)
            hk = _keys(settings, session)
            c = collections.get(session, collection)
            p = tenants.get_partner(session, partner)
            governance.set_membership(
                session,
                collection_id=c.id,
                partner_id=p.id,
                access=access,
                grant=granted,
                reason=reason,
                staff=governance.Staff.operator(),
                hub_name=settings.hub_name,
                signer=hk.signer("collection"),
            )
            click.echo(f"{'granted' if granted else 'revoked'} {access} on {c.slug} for {p.name}")

    command.__doc__ = (
        "Let PARTNER (id or name) read or contribute to COLLECTION (id or slug)."
        if granted
        else "Take away PARTNER's (id or name) read or contribute access to COLLECTION (id or slug)."
    )
    return click.command("grant" if granted else "revoke")(command)


collections_group.add_command(_access_command(True))
collections_group.add_command(_access_command(False))


@click.command()
@click.pass_obj
def scheduler(settings: Settings) -> None:
    """Run the scheduled jobs (sealing, cosignatures, audit checkpoints) until interrupted."""
    run_forever(settings)


COMMANDS: tuple[click.Command, ...] = (seal, cosign, collections_group, scheduler)
