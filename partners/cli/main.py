"""`hashfed-partner`: the kit's command line, one click group. Its commands come from the subcommand
modules beside it (`sync.py`, `reports.py`, `match.py`, `disputes.py`), which share `context.py` and never
import this one."""

from __future__ import annotations

from pathlib import Path

import click

from partners.cli import disputes as disputes_cli
from partners.cli import match as match_cli
from partners.cli import reports as reports_cli
from partners.cli import sync as sync_cli
from partners.cli.context import Context
from partners.client import config as cfg
from partners.client import logs


@click.group()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Configuration folder (default: $HASHFED_PARTNER_HOME or ./hashfed-partner).",
)
@click.option("--log-json", is_flag=True, help="Log JSON lines instead of text.")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def main(ctx: click.Context, home: Path | None, log_json: bool, verbose: bool) -> None:
    """The hashfed partner kit: a sync client that verifies every byte it applies."""
    logs.setup(log_json, verbose)
    ctx.obj = Context(cfg.home_dir(home))


for _command in (*sync_cli.COMMANDS, *reports_cli.COMMANDS, *match_cli.COMMANDS, *disputes_cli.COMMANDS):
    main.add_command(_command)

if __name__ == "__main__":
    main()
