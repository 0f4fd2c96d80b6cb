"""`hashfed keys ...` and `hashfed audit ...`: the operator's commands for keys and the audit log."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click
from sqlalchemy import select

from audit.keyset import ROLES
from audit.merkle import b64encode
from hub.cli.context import unit_of_work
from hub.config import Settings
from hub.db import make_engine, make_session_factory, utcnow
from hub.errors import HubError
from hub.feed import revocation
from hub.ops.jobs import integrate_audit_log
from hub.transparency import auditlog, keys
from hub.transparency.auditlog import Actor, record


def _load_root(paths: tuple[Path, ...]) -> list[keys.Ed25519Signer]:
    if not paths:
        raise click.UsageError("give the root key with --root PATH")
    try:
        return [keys.load_signer(p) for p in paths]
    except HubError as e:
        raise click.ClickException(e.message) from e


def _integrate(settings: Settings, now: datetime) -> auditlog.Integrated:
    engine = make_engine(settings.database_url)
    try:
        factory = make_session_factory(engine)
        with factory() as session:
            hub_keys = keys.HubKeys.load(settings, session)
        return integrate_audit_log(factory, now, keys=hub_keys)
    except HubError as e:
        raise click.ClickException(e.message) from e
    finally:
        engine.dispose()


def check_serving_name(settings: Settings) -> str:
    """Before serving: the hub is initialised and named as its key set says. Returns key set v1's pin."""
    with unit_of_work(settings) as session:
        if keys.latest_record(session) is None:
            raise click.ClickException("this hub has no key set yet; run `hashfed init` first")
        keys.HubKeys.load(settings, session)  # refuses another name than the key set's, missing key files
        return keys.keyset_record(session, 1).payload_sha256


def init_keys(settings: Settings, root_path: Path | None = None) -> None:
    """`hashfed init` step: role keys, hub secret and key set v1 (signed by the root key), once.

    `root_path`: where the root key is read, or made if missing (default: under the keys folder, the embedded
    default's convenience); production keeps it apart from what the serving hub mounts."""
    keys_path = settings.keys_path
    keys.ensure_hub_secret(keys_path)
    now = utcnow()
    with unit_of_work(settings) as session:
        first = keys.keyset_record(session, 1) if keys.latest_record(session) else None
        if first is None:
            root_path = root_path or keys.default_root_path(keys_path)
            root = keys.load_signer(root_path) if root_path.exists() else keys.create_key_file(root_path)
            for role in ROLES:
                path = keys.role_key_path(keys_path, role)
                signer = keys.load_signer(path) if path.exists() else keys.create_key_file(path)
                if session.get(keys.SigningKey, signer.key_id) is None:
                    keys.add_signing_key(session, role, signer.public_key, now)
            first = keys.publish_keyset(session, settings.hub_name, [root], now)
            record(session, Actor.operator(), "keys.publish", "key_set/1",
                   {"sha256": first.payload_sha256}, now=now)
            click.echo(f"root key: {root_path}")
            click.echo(
                "  WARNING: kept on this host for convenience (embedded default). Move it offline and\n"
                "  pass it with --root to `hashfed keys publish`/`rotate`; the serving hub never loads it."
            )
        pin = first.payload_sha256
        latest = keys.latest_record(session)
        version = latest.version if latest else 1
    result = _integrate(settings, now)
    click.echo(f"signing keys: {keys_path} (roles: {', '.join(ROLES)}); key set v{version}")
    click.echo(f"key set v1 SHA-256 (partners pin this): {pin}")
    if result.checkpoint:
        click.echo(f"audit checkpoint signed at size {result.size}")


@click.group("keys")
def keys_group() -> None:
    """The hub's signing keys and signed key sets."""


@keys_group.command("init-root")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="where to write the PEM")
def keys_init_root(out: Path) -> None:
    """Make a root key (offline): it signs key sets only and never goes on the serving host."""
    try:
        signer = keys.create_key_file(out)
    except HubError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"root key {signer.key_id} written to {out} (0600)")


@keys_group.command("publish")
@click.option("--root", "roots", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="a root key of the current key set (repeat for a threshold)")
@click.option("--new-root", "new_roots", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="replace the root keys with these (each must also sign with --root)")
@click.pass_obj
def keys_publish(settings: Settings, roots: tuple[Path, ...], new_roots: tuple[Path, ...]) -> None:
    """Sign and publish the next key set version from the signing keys in the database."""
    signers = _load_root(roots)
    replacement = [s.public_key for s in _load_root(new_roots)] if new_roots else None
    now = utcnow()
    with unit_of_work(settings) as session:
        row = keys.publish_keyset(session, settings.hub_name, signers, now, new_roots=replacement)
        record(session, Actor.operator(), "keys.publish", f"key_set/{row.version}",
               {"sha256": row.payload_sha256}, now=now)
        click.echo(f"published key set v{row.version} (payload SHA-256 {row.payload_sha256})")


@keys_group.command("rotate")
@click.argument("role", type=click.Choice(ROLES))
@click.option("--root", "roots", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="a root key of the current key set")
@click.pass_obj
def keys_rotate(settings: Settings, role: str, roots: tuple[Path, ...]) -> None:
    """Replace ROLE's online key: the old one stops now, the new one is published and used at once."""
    signers = _load_root(roots)
    now = utcnow()
    new, staged = keys.stage_key_file(settings.keys_path, role)
    try:
        with unit_of_work(settings) as session:
            _row, old, published = keys.rotate_key(session, settings.hub_name, role, new.public_key, signers, now)
            record(session, Actor.operator(), "keys.rotate", f"key/{new.key_id}",
                   {"role": role, "key_set": published.version, "retired": old.key_id if old else None}, now=now)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    keys.install_staged_key(settings.keys_path, role, staged, old.key_id if old else None)
    click.echo(f"{role} key rotated to {new.key_id}; key set v{published.version} published. "
               "Running hubs sign with it from their next request (key files shared: restart replicas that "
               "hold their own copy of the keys folder after copying the new file).")


@keys_group.command("revoke")
@click.argument("key_id")
@click.option("--root", "roots", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="a root key of the current key set (repeat for a threshold)")
@click.option("--reason", default="", help="why (kept in the audit entry; no personal data)")
@click.pass_obj
def keys_revoke(settings: Settings, key_id: str, roots: tuple[Path, ...], reason: str) -> None:
    """Revoke KEY_ID: publish a key set marking it revoked and re-sign everything it signed.

    A revoked key never counts for a verifier, whatever time a payload claims. Batch envelopes, collection
    descriptors, collection and audit checkpoints it signed are signed again by the current key of its role
    (a fresh one is rotated in first when KEY_ID is the current one); payloads and roots are unchanged."""
    signers = _load_root(roots)
    now = utcnow()
    staged = None
    with unit_of_work(settings) as session:
        row = session.get(keys.SigningKey, key_id.lower())
        current = row is not None and keys.active_key(session, row.role) is row
    if row is not None and current:
        fresh, staged = keys.stage_key_file(settings.keys_path, row.role)
    try:
        with unit_of_work(settings) as session:
            online = {role: keys.load_signer(keys.role_key_path(settings.keys_path, role)) for role in ROLES}
            done = revocation.revoke_key(
                session,
                hub_name=settings.hub_name,
                key_id=key_id.lower(),
                reason=reason,
                root_signers=signers,
                online=online,
                replacement=fresh if staged is not None else None,
                now=now,
            )
    except BaseException:
        if staged is not None:
            staged.unlink(missing_ok=True)
        raise
    if staged is not None:
        keys.install_staged_key(settings.keys_path, done.role, staged, done.key_id)
    counts = ", ".join(f"{n} {kind}" for kind, n in done.resigned.items()) or "nothing"
    click.echo(f"{done.role} key {done.key_id} revoked; key set v{done.keyset_version} published; "
               f"re-signed by {done.replacement}: {counts}.")


@keys_group.command("show")
@click.option("--pin", "pin_only", is_flag=True, help="print only key set v1's SHA-256, the pin partners enroll with")
@click.pass_obj
def keys_show(settings: Settings, pin_only: bool) -> None:
    """Print the key set versions, their pins, and the signing keys."""
    with unit_of_work(settings) as session:
        if pin_only:
            click.echo(keys.keyset_record(session, 1).payload_sha256)
            return
        for rec in session.scalars(select(keys.KeySetRecord).order_by(keys.KeySetRecord.version)):
            click.echo(f"key set v{rec.version}  sha256 {rec.payload_sha256}  {rec.created_at.isoformat()}")
        listed = select(keys.SigningKey).order_by(keys.SigningKey.role, keys.SigningKey.valid_from)
        for k in session.scalars(listed):
            state = "revoked" if k.revoked_at else ("retired" if k.valid_until else "active")
            click.echo(f"{k.role:<10} {k.key_id}  {state}")


@click.group("audit")
def audit_group() -> None:
    """The hub's audit log: entries, proofs, checkpoints, exports."""


@audit_group.command("checkpoint")
@click.pass_obj
def audit_checkpoint(settings: Settings) -> None:
    """Integrate new entries and sign a checkpoint now (the scheduled job does this every few seconds)."""
    result = _integrate(settings, utcnow())
    if result.checkpoint:
        click.echo(result.checkpoint, nl=False)
    else:
        click.echo(f"no new entries; tree size {result.size}")


@audit_group.command("entries")
@click.option("--start", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--end", default=None, type=click.IntRange(min=0), help="exclusive; default: the last entry")
@click.option("--limit", default=auditlog.MAX_PAGE, show_default=True,
              type=click.IntRange(1, auditlog.MAX_PAGE))
@click.pass_obj
def audit_entries(settings: Settings, start: int, end: int | None, limit: int) -> None:
    """Print entries START <= seq < END, one canonical JSON document per line."""
    with unit_of_work(settings) as session:
        page = auditlog.entries(session, start, end, limit=limit)
    for _seq, entry in page.entries:
        click.echo(entry.decode())
    if page.next_start is not None:
        click.echo(f"# more: --start {page.next_start}", err=True)


@audit_group.command("prove-inclusion")
@click.option("--seq", required=True, type=click.IntRange(min=0))
@click.option("--size", required=True, type=click.IntRange(min=1))
@click.pass_obj
def audit_prove_inclusion(settings: Settings, seq: int, size: int) -> None:
    """Print the inclusion proof of entry SEQ in the tree of SIZE entries (JSON)."""
    with unit_of_work(settings) as session:
        p = auditlog.inclusion_proof(session, seq, size)
    click.echo(json.dumps({"seq": p.seq, "size": p.size, "leaf_hash": b64encode(p.leaf_hash),
                           "root": b64encode(p.root), "proof": [b64encode(h) for h in p.proof]}, indent=2))


@audit_group.command("prove-consistency")
@click.option("--from", "size1", required=True, type=click.IntRange(min=1))
@click.option("--to", "size2", required=True, type=click.IntRange(min=1))
@click.pass_obj
def audit_prove_consistency(settings: Settings, size1: int, size2: int) -> None:
    """Print the consistency proof from tree size FROM to TO (JSON)."""
    with unit_of_work(settings) as session:
        p = auditlog.consistency_proof(session, size1, size2)
    click.echo(json.dumps({"from": p.size1, "to": p.size2, "root1": b64encode(p.root1),
                           "root2": b64encode(p.root2), "proof": [b64encode(h) for h in p.proof]}, indent=2))


@audit_group.command("export")
@click.option("--to", "to", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.pass_obj
def audit_export(settings: Settings, to: Path) -> None:
    """Write an export folder for `hashfed-audit verify` (key sets, entries, checkpoints)."""
    if to.exists() and any(to.iterdir()):
        raise click.ClickException(f"{to} is not empty")
    with unit_of_work(settings) as session:
        n, c = auditlog.export(
            session, str(to), settings.hub_name, utcnow(),
            checkpoint_interval_s=settings.audit_checkpoint_interval_s,
        )
    click.echo(f"exported {n} entries and {c} checkpoints to {to}; check with: hashfed-audit verify {to}")
