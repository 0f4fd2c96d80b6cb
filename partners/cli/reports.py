"""`hashfed-partner report`: queue outcomes of match reports locally and send them to the hub."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from partners.cli.context import Context, send_reports
from partners.client.errors import PartnerError
from partners.client.reports import OUTCOMES, ReportQueue
from partners.client.reports import QUEUE_FILE as REPORT_QUEUE_FILE


@click.command()
@click.option("--outcome", type=click.Choice(OUTCOMES), default=None, help="The new outcome.")
@click.option("--ref", "content_ref", default=None, help="Every report this kit made for this content reference.")
@click.option("--id", "report_ids", multiple=True, help="A report id (repeatable).")
@click.option("--actioned-at", default=None, help="RFC 3339 time of the action (default: now).")
@click.option("--automated-decision", is_flag=True, help="The decision was made by a machine, not a person.")
@click.option("--send-only", is_flag=True, help="Only send what waits in the queue.")
@click.pass_obj
def report(
    ctx: Context,
    outcome: str | None,
    content_ref: str | None,
    report_ids: Sequence[str],
    actioned_at: str | None,
    automated_decision: bool,
    send_only: bool,
) -> None:
    """Record a new outcome for reports (queued locally, then sent; retried later if the hub is unreachable)."""
    config = ctx.config()
    queue = ReportQueue.open(ctx.home / REPORT_QUEUE_FILE)
    try:
        if not send_only:
            if outcome is None or not (content_ref or report_ids):
                raise click.UsageError("give --outcome and --ref or --id (or --send-only)")
            ids = [*(queue.reports_for_ref(content_ref) if content_ref else []), *report_ids]
            if not ids:
                raise click.ClickException(f"no report was made for reference {content_ref!r}")
            for rid in dict.fromkeys(ids):
                queue.enqueue_outcome(rid, outcome, actioned_at=actioned_at, automated_decision=automated_decision)
            click.echo(f"queued outcome {outcome} for {len(set(ids))} report(s)")
        result = send_reports(config, queue)
    except PartnerError as e:
        raise click.ClickException(str(e)) from e
    finally:
        queue.close()
    click.echo(f"sent {result.sent}, rejected {result.rejected}, waiting {result.waiting}")
    if result.error:
        click.echo(f"the hub was not reached ({result.error}); waiting reports are sent on the next run", err=True)
        if send_only:
            sys.exit(1)


COMMANDS = (report,)
