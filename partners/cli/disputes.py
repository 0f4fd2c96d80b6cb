"""`hashfed-partner dispute` and `disputes`: contest a signal a report of this kit matched, follow the outcome.

The kit asks for a token with scope `reports:write` (as `report` does; config.json is unchanged). A dispute's
id at the hub is the kit's own, derived from the report (`partners.client.disputes.dispute_key`), so running
the same command again shows the same dispute instead of opening another.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace

import click

from partners.cli.context import Context
from partners.client import config as cfg
from partners.client.auth import make_session
from partners.client.disputes import (
    REASONS,
    STATUSES,
    Dispute,
    dispute_key,
    get_dispute,
    list_disputes,
    open_dispute,
    reported_signals,
)
from partners.client.errors import PartnerError
from partners.client.reports import QUEUE_FILE as REPORT_QUEUE_FILE
from partners.client.reports import ReportQueue
from partners.client.transport import RequestsTransport


@contextmanager
def _transport(config: cfg.PartnerConfig) -> Iterator[RequestsTransport]:
    transport = RequestsTransport(config.hub_url, make_session(replace(config, scope="reports:write")))
    try:
        yield transport
    finally:
        transport.close()


def announcer(config: cfg.PartnerConfig) -> Callable[[str], None]:
    """For `listen`: on a dispute event, read the dispute from the hub (the event is only a hint) and print it."""

    def announce(dispute_id: str) -> None:
        try:
            with _transport(config) as transport:
                d = get_dispute(transport, dispute_id)
        except PartnerError as e:
            click.echo(f"dispute {dispute_id}: not read ({e})", err=True)
            return
        last = d.decisions[-1].action if d.decisions else "none"
        click.echo(f"dispute {d.id}: {d.status} (last decision: {last})")

    return announce


def _print(d: Dispute, as_json: bool, **extra: object) -> None:
    if as_json:
        view = asdict(d)
        if d.decisions is None:
            del view["decisions"]
        click.echo(json.dumps({**view, **extra}))
        return
    click.echo(f"dispute id: {d.id}")
    for label, value in extra.items():
        click.echo(f"{label.replace('_', ' ')}: {value}")
    click.echo(f"status: {d.status}\nreason: {d.reason}\nsignal: {d.signal}\ncollection: {d.collection}")
    click.echo(f"opened at: {d.opened_at}")
    for label, value in (("note", d.note), ("answer", d.answer), ("decided at", d.decided_at)):
        if value is not None:
            click.echo(f"{label}: {value}")
    for x in d.decisions or ():
        click.echo(f"decision: {x.at} {x.action} ({x.state}): {x.reason}")


@click.command()
@click.option("--ref", "content_ref", default=None, help="Dispute what this kit's reports for this content matched.")
@click.option("--id", "report_ids", multiple=True, help="A report id (repeatable).")
@click.option("--reason", type=click.Choice(REASONS), default=None, help="Why the signal is wrong.")
@click.option("--note", default=None, help="A short note for the reviewing staff (at most 500 characters).")
@click.option("--show", "show_id", default=None, metavar="DISPUTE_ID", help="Show a dispute and its decisions.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dispute.")
@click.pass_obj
def dispute(ctx: Context, content_ref: str | None, report_ids: Sequence[str], reason: str | None,
            note: str | None, show_id: str | None, as_json: bool) -> None:
    """Open a dispute on each signal that this kit's reports matched (--ref or --id), or --show one."""
    if show_id is not None:
        if content_ref or report_ids or reason or note:
            raise click.UsageError("--show takes no other option but --json")
    elif reason is None or not (content_ref or report_ids) or (content_ref and report_ids):
        raise click.UsageError("give --reason and either --ref or --id (or --show DISPUTE_ID)")
    config = ctx.config()
    try:
        if show_id is not None:
            with _transport(config) as transport:
                _print(get_dispute(transport, show_id), as_json)
            return
        queue = ReportQueue.open(ctx.home / REPORT_QUEUE_FILE)
        try:
            targets = reported_signals(queue, config.mirror(ctx.home), content_ref=content_ref,
                                       report_ids=tuple(report_ids))
        finally:
            queue.close()
        with _transport(config) as transport:
            for i, target in enumerate(targets):
                opened, created = open_dispute(transport, key=dispute_key(target.report_id), signal=target.signal,
                                               reason=reason or "", note=note)
                if i and not as_json:
                    click.echo()
                _print(opened, as_json, report=target.report_id, new="yes" if created else "no (opened before)")
    except PartnerError as e:
        raise click.ClickException(str(e)) from e


@click.command()
@click.option("--contributed", is_flag=True, help="Disputes on signals this partner contributed.")
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dispute.")
@click.pass_obj
def disputes(ctx: Context, contributed: bool, status: str | None, as_json: bool) -> None:
    """List this partner's disputes (or those on its signals), newest first: id, status, reason, signal, opened."""
    config = ctx.config()
    try:
        with _transport(config) as transport:
            found = list_disputes(transport, contributed=contributed, status=status)
    except PartnerError as e:
        raise click.ClickException(str(e)) from e
    for d in found:
        if as_json:
            _print(d, True)
        else:
            click.echo(f"{d.id}\t{d.status}\t{d.reason}\t{d.signal}\t{d.opened_at}")


COMMANDS = (dispute, disputes)
