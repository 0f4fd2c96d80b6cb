"""`hashfed backup create` / `restore`: a restored hub's audit log verifies against checkpoints taken before the
backup and is a prefix of the log written after it; a tampered backup and a non-empty database are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from audit.note import Checkpoint, Note
from hub.cli.main import main
from hub.db import make_engine
from hub.ops.backup import MANIFEST, PG_DUMP_FILE
from hub.transparency.models import AuditEntry
from tests.conftest import BASE_URL, Database, create_database, drop_database


@dataclass
class Hub:
    """A hub made with `hashfed init` in a database of this test's own, driven through the CLI."""

    url: str  # the owner's URL: backup and restore run as the owner
    var: Path
    runner: CliRunner

    def env(self, url: str | None = None) -> dict[str, str]:
        return {"HASHFED_DATABASE_URL": url or self.url, "HASHFED_VAR_DIR": str(self.var),
                "HASHFED_BASE_URL": BASE_URL}

    def run(self, *args: str, url: str | None = None) -> Result:
        return self.runner.invoke(main, list(args), env=self.env(url))

    def ok(self, *args: str, url: str | None = None) -> str:
        result = self.run(*args, url=url)
        assert result.exit_code == 0, result.output
        return result.output

    def write(self, *names: str) -> None:
        for name in names:
            self.ok("partner", "create", name, "--kind", "platform")

    def checkpoint(self, path: Path) -> Path:
        note = self.ok("audit", "checkpoint")
        assert note.startswith(BASE_URL.removeprefix("http://")), note
        path.write_bytes(note.encode("utf-8"))
        return path


def _entries(url: str) -> list[bytes]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [bytes(e) for e in conn.scalars(select(AuditEntry.entry).order_by(AuditEntry.seq))]
    finally:
        engine.dispose()


@pytest.fixture
def hub(fresh_database: Database, tmp_path: Path) -> Hub:
    h = Hub(fresh_database.url, tmp_path / "var", CliRunner())
    h.ok("init")
    return h


@pytest.fixture
def empty_url(fresh_database: Database, tmp_path: Path) -> Iterator[str]:
    """An empty database (no schema) to restore into."""
    (tmp_path / "target").mkdir()
    url, handle = create_database(migrate_to=None)
    try:
        yield url
    finally:
        drop_database(handle)


def _database_file(folder: Path) -> Path:
    return folder / PG_DUMP_FILE


def test_a_restored_log_verifies_against_earlier_checkpoints_and_is_a_prefix_of_the_later_log(
    hub: Hub, empty_url: str, tmp_path: Path
) -> None:
    hub.write("alpha", "beta")
    kept = hub.checkpoint(tmp_path / "kept.note")  # a checkpoint a partner kept before the backup
    hub.write("gamma")
    hub.checkpoint(tmp_path / "latest.note")
    hub.write("delta")  # recorded but not under any checkpoint yet: in the backup all the same
    before = _entries(hub.url)

    made = hub.ok("backup", "create", "--to", str(tmp_path / "backup"))
    assert f"{len(before)} audit entries" in made and "keys not included" in made
    manifest = json.loads((tmp_path / "backup" / MANIFEST).read_text())
    latest_size = Checkpoint.from_text(Note.parse((tmp_path / "latest.note").read_text()).text).size
    assert manifest["audit"]["tree_size"] == latest_size
    assert manifest["audit"]["entries"] == len(before)
    assert manifest["audit"]["checkpoint"] == (tmp_path / "latest.note").read_text()
    assert not any(name.startswith("keys/") or name.endswith(".pem") for name in manifest["files"])

    hub.write("epsilon", "zeta")  # the hub goes on after the backup
    hub.checkpoint(tmp_path / "after.note")
    later = _entries(hub.url)

    restored = hub.ok("backup", "restore", "--from", str(tmp_path / "backup"), "--checkpoint", str(kept),
                      url=empty_url)
    assert "audit log: OK" in restored, restored
    assert f"restored {len(before)} audit entries" in restored
    assert str(kept) in restored
    assert hub.ok("db", "current", url=empty_url)
    got = _entries(empty_url)
    assert got == before
    assert later[: len(got)] == got and len(later) > len(got)


def test_a_checkpoint_taken_after_the_backup_is_not_extended_by_the_restore(
    hub: Hub, empty_url: str, tmp_path: Path
) -> None:
    hub.write("alpha")
    hub.ok("backup", "create", "--to", str(tmp_path / "backup"))
    hub.write("beta")
    after = hub.checkpoint(tmp_path / "after.note")  # the restore rolls the log back behind this one

    refused = hub.run("backup", "restore", "--from", str(tmp_path / "backup"), "--checkpoint", str(after),
                      url=empty_url)
    assert refused.exit_code == 1
    assert "does not verify" in refused.output and "FAIL" in refused.output


def test_a_corrupted_backup_is_refused_before_anything_is_restored(hub: Hub, empty_url: str, tmp_path: Path) -> None:
    hub.write("alpha")
    hub.ok("backup", "create", "--to", str(tmp_path / "backup"))
    damaged = _database_file(tmp_path / "backup")
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged.write_bytes(bytes(data))

    refused = hub.run("backup", "restore", "--from", str(tmp_path / "backup"), url=empty_url)
    assert refused.exit_code != 0
    assert f"{damaged.name} does not match the manifest" in refused.output
    assert "current: (none)" in hub.run("db", "current", url=empty_url).output


def test_a_restore_into_a_database_that_is_not_empty_is_refused_unless_forced(
    hub: Hub, empty_url: str, tmp_path: Path
) -> None:
    hub.write("alpha")
    hub.ok("backup", "create", "--to", str(tmp_path / "backup"))
    hub.write("beta")
    entries = _entries(hub.url)

    refused = hub.run("backup", "restore", "--from", str(tmp_path / "backup"))  # the live database
    assert refused.exit_code != 0 and "not empty" in refused.output
    assert _entries(hub.url) == entries

    hub.ok("backup", "restore", "--from", str(tmp_path / "backup"), url=empty_url)
    again = hub.ok("backup", "restore", "--from", str(tmp_path / "backup"), "--force", url=empty_url)
    assert "audit log: OK" in again
    assert _entries(empty_url) == entries[: len(_entries(empty_url))] and len(_entries(empty_url)) < len(entries)


def test_keys_are_copied_only_when_asked_and_never_the_root_key(hub: Hub, tmp_path: Path) -> None:
    hub.ok("backup", "create", "--to", str(tmp_path / "backup"), "--include-keys")
    files = json.loads((tmp_path / "backup" / MANIFEST).read_text())["files"]
    copied = sorted(name.removeprefix("keys/") for name in files if name.startswith("keys/"))
    assert "hub-secret.key" in copied and "audit.pem" in copied
    assert not any("root" in name for name in copied)
    assert not (tmp_path / "backup" / "keys" / "root").exists()
