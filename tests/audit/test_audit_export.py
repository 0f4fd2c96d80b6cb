"""`hashfed-audit verify` on a good export and on truncated, reordered, edited, forked and wrong-key ones."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from audit.cli import main
from audit.dsse import Envelope
from audit.export import manifest_for, verify_export, write_export
from audit.log import MemoryNodeStore, MerkleLog
from audit.merkle import leaf_hash
from audit.note import Checkpoint, sign_checkpoint
from audit.payloads import AuditEntry
from audit.signing import Signer
from tests.audit.audit_testkit import HUB, NOW, keyset_dict, seeded, signed_keyset

ORIGIN = f"{HUB}/audit"
ROOT1, ROOT2, AUDIT, STRANGER = seeded(21), seeded(22), seeded(23), seeded(24)
KEYS = {"audit": (AUDIT, ["audit"])}
KEYSETS = [
    signed_keyset(keyset_dict(1, [ROOT1], KEYS), [ROOT1]),
    signed_keyset(keyset_dict(2, [ROOT2], KEYS), [ROOT1, ROOT2]),
]
PIN = hashlib.sha256(Envelope.from_json(KEYSETS[0]).payload).hexdigest()
SIZES = (4, 7, 10)


def entries(n: int = 10, fork_at: int | None = None) -> list[bytes]:
    out = []
    for i in range(n):
        subject = f"signal/{i}" if fork_at is None or i < fork_at else f"forked/{i}"
        entry = AuditEntry(
            i,
            NOW - timedelta(days=30) + timedelta(minutes=i),
            {"partner": "p1", "kind": "client"},
            "signal.add",
            subject,
            {"collection": "c1"},
        )
        out.append(entry.to_bytes())
    return out


def checkpoints(data: list[bytes], signer: Signer = AUDIT) -> list[str]:
    log = MerkleLog(MemoryNodeStore())
    log.append([leaf_hash(e) for e in data])
    return [sign_checkpoint(Checkpoint(ORIGIN, size, log.root(size)), signer) for size in SIZES]


def export(path: Path, data: list[bytes] | None = None, notes: list[str] | None = None) -> Path:
    data = entries() if data is None else data
    write_export(path, KEYSETS, data, checkpoints(data) if notes is None else notes, manifest_for(HUB, NOW))
    return path


def run(path: Path, *extra: str) -> tuple[int, str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["verify", str(path), *extra])
    return code, out.getvalue()


def test_good_export_verifies(tmp_path: Path) -> None:
    path = export(tmp_path)
    code, out = run(path, "--keyset-sha256", PIN)
    assert code == 0, out
    assert out.startswith("OK:") and "10 entries" in out and "pinned" in out
    code, out = run(path)
    assert code == 0 and "trusted on first use" in out
    report = verify_export(path, PIN)
    assert report.ok and report.keyset_version == 2 and report.checkpoints == 3


def test_console_script_runs(tmp_path: Path) -> None:
    path = export(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "audit.cli", "verify", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _lines(path: Path) -> list[str]:
    return (path / "entries.jsonl").read_text().splitlines(keepends=True)


def truncate(path: Path) -> None:
    (path / "entries.jsonl").write_text("".join(_lines(path)[:8]))


def reorder(path: Path) -> None:
    lines = _lines(path)
    lines[2], lines[3] = lines[3], lines[2]
    (path / "entries.jsonl").write_text("".join(lines))


def reorder_renumbered(path: Path) -> None:
    lines = [json.loads(x) for x in _lines(path)]
    lines[2]["entry"], lines[3]["entry"] = lines[3]["entry"], lines[2]["entry"]
    (path / "entries.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def edit(path: Path) -> None:
    lines = [json.loads(x) for x in _lines(path)]
    body = json.loads(base64.b64decode(lines[5]["entry"]))
    body["subject"] = "signal/500"
    lines[5]["entry"] = base64.b64encode(AuditEntry.from_dict(body).to_bytes()).decode()
    (path / "entries.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def fork(path: Path) -> None:
    forked = checkpoints(entries(fork_at=2))
    (path / "checkpoints" / "4.note").write_text(forked[0])


def wrong_key(path: Path) -> None:
    for note in checkpoints(entries(), STRANGER):
        size = note.split("\n")[1]
        (path / "checkpoints" / f"{size}.note").write_text(note)


def edit_note(path: Path) -> None:
    note = (path / "checkpoints" / "7.note").read_text()
    (path / "checkpoints" / "7.note").write_text(note.replace("\n7\n", "\n8\n", 1))


def drop_keyset(path: Path) -> None:
    (path / "keys" / "1.json").unlink()


CASES: list[tuple[Callable[[Path], None], str]] = [
    (truncate, "checkpoint 10: the export holds only 8 entries (truncated)"),
    (reorder, "line 3: seq 3, expected 2 (reordered or missing)"),
    (reorder_renumbered, "entry seq 2: its body says seq 3 (reordered)"),
    (edit, "checkpoint 7: root differs"),
    (fork, "checkpoint 4: root differs"),
    (wrong_key, "checkpoint 4: no known key signed this note (wrong key"),
    (edit_note, "checkpoint 7: signature by hub.example.org/audit does not verify"),
    (drop_keyset, "keys/ must hold 1.json, 2.json"),
]


@pytest.mark.parametrize(
    ("damage", "message"),
    CASES,
    ids=[
        "truncated",
        "reordered",
        "reordered and renumbered",
        "edited",
        "forked",
        "wrong key",
        "edited note",
        "missing key set",
    ],
)
def test_damaged_export_fails(tmp_path: Path, damage: Callable[[Path], None], message: str) -> None:
    path = export(tmp_path)
    damage(path)
    code, out = run(path, "--keyset-sha256", PIN)
    assert code != 0
    assert out.startswith("FAIL")
    assert message in out


def test_wrong_pin_fails(tmp_path: Path) -> None:
    code, out = run(export(tmp_path), "--keyset-sha256", "ab" * 32)
    assert code == 1 and "does not match the pin" in out


def test_entries_after_the_latest_checkpoint_are_named_with_when_one_is_due(tmp_path: Path) -> None:
    data = entries(12)  # checkpoints at 4, 7, 10: entries 10 and 11 follow the latest
    newest = AuditEntry.from_bytes(data[-1]).time

    def notes(manifest: dict[str, object]) -> list[str]:
        path = tmp_path / str(len(list(tmp_path.iterdir())))
        write_export(path, KEYSETS, data, checkpoints(data), manifest)
        report = verify_export(path, PIN)
        assert report.ok and report.checkpoints == 3, report.verdict
        return report.notes

    without = notes(manifest_for(HUB, NOW))
    assert len(without) == 1 and without[0].startswith("entries 10..11 (recorded ")
    assert "follow the latest checkpoint (size 10)" in without[0] and "next audit checkpoint" in without[0]

    soon = notes(manifest_for(HUB, newest + timedelta(seconds=5), checkpoint_interval_s=30))
    due = (newest + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"every 30 s: the next is due by {due}" in soon[0]

    late = notes(manifest_for(HUB, newest + timedelta(hours=2), checkpoint_interval_s=30))
    assert f"was due by {due}, before this export was made" in late[0]
    assert "checkpoints have stopped" in late[0]

    covered = tmp_path / "covered"
    write_export(covered, KEYSETS, entries(10), checkpoints(entries(10)), manifest_for(HUB, NOW, 30))
    assert verify_export(covered, PIN).notes == []


@pytest.mark.parametrize("interval", [0, -5, "30", True], ids=["zero", "negative", "text", "bool"])
def test_a_malformed_checkpoint_interval_is_refused(tmp_path: Path, interval: object) -> None:
    manifest = {**manifest_for(HUB, NOW), "checkpoint_interval_s": interval}
    write_export(tmp_path, KEYSETS, entries(), checkpoints(entries()), manifest)
    report = verify_export(tmp_path, PIN)
    assert not report.ok and "checkpoint_interval_s" in report.verdict
