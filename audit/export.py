"""Audit log exports: the folder a hub hands to a regulator, how to write it and how to verify it offline.

Layout (docs/formats.md): `manifest.json`, `keys/<version>.json` (key set envelopes), `entries.jsonl`
(`{"seq": n, "entry": base64 of the canonical entry bytes}` per line) and `checkpoints/<size>.note`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from audit.canonical import canonical_json, format_time, parse_json, parse_time
from audit.dsse import Envelope
from audit.errors import FormatError, LogError, RootMismatchError, SignatureError, VerificationError
from audit.keyset import KeySet, walk_keysets
from audit.log import MemoryNodeStore, MerkleLog
from audit.merkle import b64decode, b64encode, leaf_hash, verify_consistency
from audit.note import SIG_ED25519, Checkpoint, Note, open_checkpoint
from audit.payloads import AuditEntry
from audit.signing import key_id


@dataclass
class Report:
    """The outcome of `verify_export`: `ok`, a one-line `verdict`, and what was checked."""

    ok: bool
    verdict: str
    entries: int = 0
    checkpoints: int = 0
    keyset_version: int = 0
    trusted_on_first_use: bool = False
    notes: list[str] = field(default_factory=list)


def write_export(
    path: str | Path,
    keysets: Sequence[bytes],
    entries: Sequence[bytes],
    checkpoints: Sequence[str],
    manifest: Mapping[str, Any],
) -> None:
    """Write an export folder: key set envelopes (v1 first), canonical entry bytes, checkpoint notes."""
    root = Path(path)
    (root / "keys").mkdir(parents=True, exist_ok=True)
    (root / "checkpoints").mkdir(exist_ok=True)
    (root / "manifest.json").write_bytes(canonical_json(dict(manifest)))
    for env_bytes in keysets:
        version = KeySet.from_bytes(Envelope.from_json(env_bytes).payload).version
        (root / "keys" / f"{version}.json").write_bytes(env_bytes)
    with (root / "entries.jsonl").open("wb") as f:
        for seq, entry in enumerate(entries):
            f.write(canonical_json({"seq": seq, "entry": b64encode(entry)}) + b"\n")
    for note in checkpoints:
        size = Checkpoint.from_text(Note.parse(note).text).size
        (root / "checkpoints" / f"{size}.note").write_text(note, encoding="utf-8")


def manifest_for(hub: str, exported_at: datetime, checkpoint_interval_s: int | None = None) -> dict[str, Any]:
    """The manifest of an export of `hub`'s audit log; `checkpoint_interval_s`: how often the hub signs one."""
    manifest: dict[str, Any] = {"hub": hub, "origin": f"{hub}/audit", "exported_at": format_time(exported_at)}
    if checkpoint_interval_s is not None:
        manifest["checkpoint_interval_s"] = checkpoint_interval_s
    return manifest


def _numbered(folder: Path, suffix: str) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        raise FormatError(f"{folder.name}/ is missing")
    out = []
    for p in folder.iterdir():
        m = re.fullmatch(r"(0|[1-9][0-9]*)" + re.escape(suffix), p.name)
        if not m:
            raise FormatError(f"unexpected file {folder.name}/{p.name}")
        out.append((int(m.group(1)), p))
    return sorted(out)


def _read_entries(path: Path) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    for line_no, line in enumerate(path.read_bytes().splitlines(), start=1):
        seq = len(entries)
        record = parse_json(line)
        if not isinstance(record, dict) or set(record) != {"seq", "entry"}:
            raise FormatError(f"entries.jsonl line {line_no}: expected {{seq, entry}}")
        if record["seq"] != seq:
            raise LogError(
                f"entries.jsonl line {line_no}: seq {record['seq']}, expected {seq} (reordered or missing)"
            )
        try:
            entry = AuditEntry.from_bytes(b64decode(record["entry"], "entry"))
        except VerificationError as e:
            raise type(e)(f"entry seq {seq}: {e}") from e
        if entry.seq != seq:
            raise LogError(f"entry seq {seq}: its body says seq {entry.seq} (reordered)")
        if entries and entry.time < entries[-1].time:
            raise LogError(f"entry seq {seq}: time goes backwards (reordered)")
        entries.append(entry)
    return entries


def _verify(root: Path, pinned: str | None) -> Report:
    manifest = parse_json((root / "manifest.json").read_bytes())
    if not isinstance(manifest, dict) or not (
        {"hub", "origin", "exported_at"} <= set(manifest) <= {"hub", "origin", "exported_at", "checkpoint_interval_s"}
    ):
        raise FormatError("manifest.json has hub, origin and exported_at, and may have checkpoint_interval_s")
    interval = manifest.get("checkpoint_interval_s")
    if interval is not None and (type(interval) is not int or interval <= 0):
        raise FormatError("manifest checkpoint_interval_s is a positive integer")
    hub, origin, exported_at = manifest["hub"], manifest["origin"], parse_time(manifest["exported_at"])
    if origin != f"{hub}/audit":
        raise FormatError(f"manifest origin {origin!r} is not {hub}/audit")

    keys = _numbered(root / "keys", ".json")
    if [v for v, _ in keys] != list(range(1, len(keys) + 1)):
        raise FormatError("keys/ must hold 1.json, 2.json, ... without gaps")
    try:
        trusted = walk_keysets([p.read_bytes() for _, p in keys], pinned, exported_at)
    except VerificationError as e:
        raise type(e)(f"key set: {e}") from e
    keyset = trusted.keyset
    if keyset.hub != hub:
        raise FormatError(f"key set hub {keyset.hub!r} is not the manifest's {hub!r}")

    entries = _read_entries(root / "entries.jsonl")
    log = MerkleLog(MemoryNodeStore())
    log.append([leaf_hash(e.to_bytes()) for e in entries])

    audit_keys = keyset.role_keys("audit")
    previous: Checkpoint | None = None
    checkpoints = _numbered(root / "checkpoints", ".note")
    if not checkpoints:
        raise LogError("the export holds no checkpoint")
    for size, path in checkpoints:
        where = f"checkpoint {size}"
        try:
            signed = open_checkpoint(path.read_bytes(), origin, list(audit_keys.values()))
        except VerificationError as e:
            raise type(e)(f"{where}: {e} (wrong key or edited note)") from e
        cp = signed.checkpoint
        if cp.size != size:
            raise FormatError(f"{where}: the note says size {cp.size}")
        if size > len(entries):
            raise LogError(f"{where}: the export holds only {len(entries)} entries (truncated)")
        if size:
            # The key must have been usable when the checkpoint could first have been signed.
            t = entries[size - 1].time
            usable = [
                s
                for s in signed.note.signatures
                if keyset.keys[key_id(s.public_key)].usable_at(t) and s.sig_type == SIG_ED25519
            ]
            if not usable:
                raise SignatureError(f"{where}: signed by an audit key not valid at {format_time(t)}")
        if log.root(size) != cp.root:
            first = previous.size if previous else 0
            raise RootMismatchError(
                f"{where}: root differs from the one recomputed from the entries; the first difference is in "
                f"entries {first}..{size - 1} (edited entries or a forked log)"
            )
        if previous is not None and previous.size > 0:
            verify_consistency(
                previous.size, size, previous.root, cp.root, log.consistency_proof(previous.size, size)
            )
        previous = cp

    last = checkpoints[-1][0]
    notes = []
    if last < len(entries):
        notes.append(_uncovered(entries, last, exported_at, interval))
    trust = "trusted on first use" if trusted.trusted_on_first_use else "pinned"
    verdict = (
        f"OK: {origin}: {len(entries)} entries, {len(checkpoints)} checkpoints consistent up to size "
        f"{last}, key set v{keyset.version} ({trust})"
    )
    return Report(
        True, verdict, len(entries), len(checkpoints), keyset.version, trusted.trusted_on_first_use, notes
    )


def _uncovered(entries: list[AuditEntry], last: int, exported_at: datetime, interval: int | None) -> str:
    """Say which entries follow the latest checkpoint and when one covering them is due."""
    first, newest = entries[last], entries[-1]
    span = f"entries {last}..{newest.seq}" if newest.seq > last else f"entry {last}"
    text = (
        f"{span} (recorded {format_time(first.time)} to {format_time(newest.time)}) follow the latest "
        f"checkpoint (size {last}): they are in this export but no signed checkpoint commits to them yet, so "
        f"they are not verified."
    )
    if interval is None:
        return text + " Export again after the hub's next audit checkpoint to verify them."
    due = newest.time + timedelta(seconds=interval)
    if due < exported_at:
        return text + (
            f" The hub signs an audit checkpoint every {interval} s, so one covering them was due by "
            f"{format_time(due)}, before this export was made ({format_time(exported_at)}): ask the hub's "
            "operator whether its audit checkpoints have stopped."
        )
    return text + (
        f" The hub signs an audit checkpoint every {interval} s: the next is due by {format_time(due)};"
        " export again after it to verify them."
    )


def verify_export(path: str | Path, pinned: str | None = None) -> Report:
    """Verify an export folder; `pinned`: hex SHA-256 of key set v1's payload (None: trust on first use)."""
    try:
        return _verify(Path(path), pinned)
    except VerificationError as e:
        return Report(False, f"FAIL ({type(e).__name__}): {e}")
    except (OSError, json.JSONDecodeError) as e:
        return Report(False, f"FAIL (FormatError): cannot read the export: {e}")
