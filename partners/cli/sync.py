"""`hashfed-partner enroll`, `sync`, `status`, `confirm`, `listen` and `webhook`: the verified sync client."""

from __future__ import annotations

import json
import ssl
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import click

from partners.cli import disputes as disputes_cli
from partners.cli.context import Context, build_syncer
from partners.client import config as cfg
from partners.client.errors import PartnerError
from partners.client.schedule import Runner, parse_duration
from partners.client.sync import SyncReport
from partners.client.transport import check_status
from partners.client.webhook import WebhookVerifier, make_server


def _print_report(report: SyncReport) -> None:
    for r in report.results:
        if r.error is None:
            extra = f", snapshot of {r.snapshot_signals} signals" if r.snapshot_signals else ""
            click.echo(f"{r.collection}: seq {r.seq_before} -> {r.seq_after} ({r.batches} batches{extra})")
        else:
            click.echo(f"{r.collection}: FAILED [{r.error.check}] {r.error}", err=True)


@click.command()
@click.option("--hub", "hub_url", required=True, help="The hub's base URL, e.g. https://hub.example.org")
@click.option("--client-id", required=True)
@click.option("--key", "key_path", type=click.Path(dir_okay=False), help="Private JWK (private_key_jwt).")
@click.option("--secret-file", type=click.Path(dir_okay=False), help="File holding the client secret.")
@click.option("--keyset-sha256", required=True, help="SHA-256 of the key set payload, got out of band.")
@click.option("--mirror-url", default=None, help="SQLAlchemy URL of the mirror (default: SQLite in HOME).")
@click.option("--collection", "collections", multiple=True, help="Only these collections (default: all).")
@click.option("--max-age", default="1h", show_default=True, help="Oldest acceptable checkpoint cosignature.")
@click.option("--removal-share", default=0.05, show_default=True, help="Hold batches removing more than this.")
@click.option("--token-url", default=None, help="Token endpoint (default: HUB/oauth/token).")
@click.pass_obj
def enroll(
    ctx: Context,
    hub_url: str,
    client_id: str,
    key_path: str | None,
    secret_file: str | None,
    keyset_sha256: str,
    mirror_url: str | None,
    collections: Sequence[str],
    max_age: str,
    removal_share: float,
    token_url: str | None,
) -> None:
    """Store the configuration and the pinned key set digest (secrets stay where they are, by path)."""
    try:
        for path in (key_path, secret_file):
            if path:
                cfg.check_secret_file(path)
        config = cfg.PartnerConfig(
            hub_url=hub_url.rstrip("/"),
            client_id=client_id,
            keyset_sha256=keyset_sha256.lower(),
            key_path=str(Path(key_path).resolve()) if key_path else None,
            secret_path=str(Path(secret_file).resolve()) if secret_file else None,
            token_url=token_url,
            mirror_url=mirror_url,
            max_age_s=int(parse_duration(max_age)),
            max_removal_share=removal_share,
            collections=tuple(collections),
        )
        saved = cfg.save(ctx.home, config)
        ctx.mirror(config).close()
    except (PartnerError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"enrolled {client_id} with {hub_url}; configuration in {saved}")


@click.command()
@click.option("--once", "mode", flag_value="once", default=True, help="Sync once and exit (default).")
@click.option("--every", default=None, help="Sync on a schedule, e.g. 5m.")
@click.option("--jitter", default="30s", show_default=True, help="Random delay added to each scheduled run.")
@click.option("--collection", "only", multiple=True, help="Only these collections.")
@click.pass_obj
def sync(ctx: Context, mode: str, every: str | None, jitter: str, only: Sequence[str]) -> None:
    """Sync every readable collection; exit status 1 if any collection failed."""
    config = ctx.config()
    mirror = ctx.mirror(config)
    syncer = build_syncer(ctx, config, mirror)
    try:
        if every is None:
            report = syncer.sync(list(only) or None)
            _print_report(report)
            if not report.ok:
                sys.exit(1)
            return
        runner = Runner(lambda cs: syncer.sync(cs or list(only) or None), parse_duration(every), parse_duration(jitter))
        runner.start()
        runner.wait()
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    finally:
        syncer.transport.close()
        mirror.close()


def _age(cosigned_at: int | None) -> str:
    if cosigned_at is None:
        return "-"
    seconds = int(datetime.now(UTC).timestamp()) - cosigned_at
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(ctx: Context, as_json: bool) -> None:
    """Per collection: seq, hashes held, checkpoint age, last success, last error, held batch, alerts."""
    config = ctx.config()
    mirror = ctx.mirror(config)
    try:
        rows = mirror.status()
        alerts = mirror.open_alerts()
    finally:
        mirror.close()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "collections": [vars(r) | {"held": vars(r.held) if r.held else None} for r in rows],
                    "alerts": [{k: v for k, v in a.items()} for a in alerts],
                },
                indent=2,
            )
        )
        return
    if not rows:
        click.echo("nothing synced yet")
    for r in rows:
        click.echo(
            f"{r.collection}: seq {r.seq}, {r.active} hashes, checkpoint {r.checkpoint_size} "
            f"cosigned {_age(r.cosigned_at)} ago, last success {r.last_success or '-'}"
        )
        if r.last_error:
            click.echo(f"  last error ({r.last_error_at}): {r.last_error}")
        if r.held:
            state = f"confirmed {r.held.confirmed_at}" if r.held.confirmed_at else "run `hashfed-partner confirm`"
            click.echo(f"  HELD batch {r.held.seq}: removes {r.held.removes} of {r.held.active} ({state})")
    for a in alerts:
        click.echo(f"ALERT {a['kind']} on {a['collection']} at {a['detected_at']}: {a['detail']}")


@click.command()
@click.argument("collection")
@click.option("--seq", type=int, default=None, help="The held batch's seq, to be sure of what you confirm.")
@click.option("--clear-fork", is_flag=True, help="Resolve the collection's fork alerts (after investigating).")
@click.pass_obj
def confirm(ctx: Context, collection: str, seq: int | None, clear_fork: bool) -> None:
    """Let the next sync apply a held mass removal (or, with --clear-fork, resume after a fork alert)."""
    config = ctx.config()
    mirror = ctx.mirror(config)
    try:
        if clear_fork:
            click.echo(f"{collection}: {mirror.resolve_alerts(collection)} alert(s) resolved")
            return
        held = mirror.confirm(collection, seq)
    except PartnerError as e:
        raise click.ClickException(str(e)) from e
    finally:
        mirror.close()
    click.echo(f"{collection}: batch {held.seq} (removes {held.removes} of {held.active}) will be applied next sync")


@click.command()
@click.option("--port", type=int, required=True)
@click.option("--host", default="0.0.0.0", show_default=True)  # noqa: S104 - a receiver listens for the hub
@click.option("--every", default="15m", show_default=True, help="Scheduled syncs besides the pushes.")
@click.option("--jitter", default="30s", show_default=True)
@click.option("--window", default="15m", show_default=True, help="Replay window for webhook deliveries.")
@click.option("--tls-cert", type=click.Path(dir_okay=False), default=None)
@click.option("--tls-key", type=click.Path(dir_okay=False), default=None)
@click.pass_obj
def listen(
    ctx: Context,
    port: int,
    host: str,
    every: str,
    jitter: str,
    window: str,
    tls_cert: str | None,
    tls_key: str | None,
) -> None:
    """Receive the hub's signed checkpoint webhooks (/hashfed/webhook) and sync at once, and on a schedule; print
    the outcome of a dispute when the hub announces a decision."""
    config = ctx.config()
    mirror = ctx.mirror(config)
    syncer = build_syncer(ctx, config, mirror)
    runner = Runner(lambda cs: syncer.sync(cs), parse_duration(every), parse_duration(jitter))
    tls = None
    if tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(tls_cert, tls_key)
    verifier = WebhookVerifier(mirror, config.keyset_sha256, window_s=int(parse_duration(window)))
    server = make_server(host, port, verifier, runner.trigger, tls, on_dispute=disputes_cli.announcer(config))
    runner.start()
    click.echo(f"listening on {'https' if tls else 'http'}://{host}:{server.server_address[1]}/hashfed/webhook")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        runner.stop()
        mirror.close()


@click.command()
@click.argument("url", required=False)
@click.option("--delete", is_flag=True, help="Stop the hub's webhooks to this partner.")
@click.pass_obj
def webhook(ctx: Context, url: str | None, delete: bool) -> None:
    """Register URL (https://.../hashfed/webhook) as this partner's webhook endpoint at the hub, or show it."""
    config = ctx.config()
    mirror = ctx.mirror(config)
    transport = build_syncer(ctx, config, mirror).transport
    try:
        if delete:
            check_status(transport.request("DELETE", "/v1/webhooks", max_bytes=1 << 16), "webhook")
            click.echo("webhook removed")
            return
        if url:
            r = transport.request("PUT", "/v1/webhooks", json_body={"url": url}, max_bytes=1 << 16)
        else:
            r = transport.request("GET", "/v1/webhooks", max_bytes=1 << 16)
        click.echo(json.dumps(check_status(r, "webhook").json()))
    except PartnerError as e:
        raise click.ClickException(str(e)) from e
    finally:
        transport.close()
        mirror.close()


COMMANDS = (enroll, sync, status, confirm, listen, webhook)
