"""`hashfed exports create|list|write`: transparency exports from the operator's command line."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy.orm import Session

from audit.exports import parse_period
from hub.cli.context import emit, json_option, unit_of_work
from hub.config import Settings
from hub.errors import HubError
from hub.exports import service
from hub.transparency.auditlog import Actor
from hub.transparency.keys import HubKeys


def _keys(settings: Settings, session: Session) -> HubKeys:
    try:
        return HubKeys.load(settings, session)
    except HubError as e:
        raise click.ClickException(e.message) from e


@click.group("exports")
def exports_group() -> None:
    """Signed, suppressed transparency bundles of a period (docs/formats.md)."""


@exports_group.command("create")
@click.option("--period", default=None, help="a quarter (2026-Q3) or a month (2026-07)")
@click.option("--from", "start", default=None, help="start of an explicit range: 2026-07-01 or an RFC 3339 time")
@click.option("--to", "end", default=None, help="end of an explicit range (excluded)")
@click.option("--publish", is_flag=True, help="show it on the public /transparency page")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write the bundle to this file")
@json_option
@click.pass_obj
def create(
    settings: Settings, period: str | None, start: str | None, end: str | None, publish: bool, out: Path | None,
    as_json: bool,
) -> None:
    """Draw the bundle of a period at the latest audit checkpoint (recorded in the audit log)."""
    try:
        wanted = parse_period(period, start, end)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    with unit_of_work(settings) as session:
        keys = _keys(settings, session)
        row = service.create(
            session, keys, wanted, actor=Actor.operator(), partner_id=None, threshold=settings.export_min_cell,
            publish=publish,
        )
        if out is not None:
            with out.open("w+b") as f:
                service.write(session, keys, row, f)
        fields: dict[str, object] = {
            "export id": row.id,
            "period": row.period_label,
            "checkpoint size": row.checkpoint_size,
            "entries": f"{row.first_seq}..{row.end_seq}",
            "bundle sha256": row.bundle_sha256,
            "bundle bytes": row.bundle_bytes,
            "published": row.published,
        }
    if out is not None:
        fields["written to"] = str(out)
    emit(fields, as_json, "verify it with: hashfed-audit verify-export BUNDLE --keyset-sha256 PIN")


@exports_group.command("list")
@json_option
@click.pass_obj
def list_(settings: Settings, as_json: bool) -> None:
    """The newest exports."""
    with unit_of_work(settings) as session:
        rows = [service.view(r) for r in service.list_exports(session)]
    if as_json:
        emit({"exports": [{k: v for k, v in r.items() if k != "aggregates"} for r in rows]}, True)
        return
    for r in rows:
        click.echo(f"{r['id']}  {r['period']['label']}  {r['created_at']}  sha256 {r['bundle_sha256']}"
                   f"{'  published' if r['published'] else ''}")


@exports_group.command("write")
@click.argument("export_id")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def write(settings: Settings, export_id: str, out: Path) -> None:
    """Write an export's bundle to OUT again (its SHA-256 is checked against the one recorded)."""
    with unit_of_work(settings) as session:
        keys = _keys(settings, session)
        row = service.get(session, export_id)
        with out.open("w+b") as f:
            service.write(session, keys, row, f)
    click.echo(f"wrote {out} (sha256 {row.bundle_sha256})")


COMMANDS = (exports_group,)
