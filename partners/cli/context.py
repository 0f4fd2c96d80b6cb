"""What every `hashfed-partner` subcommand shares: the configuration folder, the mirror, an authenticated
syncer and the report sender. Subcommand modules import this, never the group in `main.py`."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from partners.client import config as cfg
from partners.client.auth import make_session
from partners.client.errors import PartnerError
from partners.client.indexing import sync_hook as index_sync_hook
from partners.client.mirror import Mirror
from partners.client.reports import FlushResult, ReportQueue
from partners.client.sync import Syncer
from partners.client.transport import RequestsTransport


@dataclass
class Context:
    """What every command gets: the configuration folder."""

    home: Path

    def config(self) -> cfg.PartnerConfig:
        try:
            return cfg.load(self.home)
        except PartnerError as e:
            raise click.ClickException(str(e)) from e

    def mirror(self, config: cfg.PartnerConfig) -> Mirror:
        try:
            return Mirror.open(config.mirror(self.home))
        except PartnerError as e:
            raise click.ClickException(str(e)) from e


def progress_factory() -> Any:
    """tqdm bars on a terminal, nothing otherwise."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm  # only on a terminal: a scheduled or piped run never loads it

    def factory(total: int, label: str) -> Any:
        return tqdm(total=total, desc=label, unit="item", leave=False, mininterval=0.5) if total > 1000 else None

    return factory


def build_syncer(ctx: Context, config: cfg.PartnerConfig, mirror: Mirror) -> Syncer:
    """A syncer over an authenticated requests transport."""
    try:
        session = make_session(config)
    except PartnerError as e:
        raise click.ClickException(str(e)) from e
    return Syncer(
        RequestsTransport(config.hub_url, session),
        mirror,
        config.keyset_sha256,
        config.policy(),
        only=config.collections,
        progress=progress_factory(),
        on_synced=index_sync_hook(ctx.home, mirror),
    )


def send_reports(config: cfg.PartnerConfig, queue: ReportQueue) -> FlushResult:
    """Send what waits in the report queue with a `reports:write` token (the kit's sync config is untouched)."""
    transport = RequestsTransport(config.hub_url, make_session(replace(config, scope="reports:write")))
    try:
        return queue.flush(transport)
    finally:
        transport.close()
