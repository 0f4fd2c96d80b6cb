"""Audit log exports: the folder a hub hands to a regulator, how to write it and how to verify it offline.

Layout (docs/formats.md): `manifest.json`, `keys/<version>.json` (key set envelopes), `entries.jsonl`
(`{"seq": n, "entry": base64 of the canonical entry bytes}` per line) and `checkpoints/<size>.note`.

An export only proves itself consistent. A verifier holds the hub to what it saw before with the signed checkpoints
it kept (a rolled-back or forked log fails), and to what others saw with witness cosignatures (docs/witnesses.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from audit.canonical import canonical_json, format_time, parse_json, parse_time
from audit.dsse import Envelope
from audit.errors import (
    FormatError,
    LogError,
    ProofError,
    RevokedKeyError,
    RootMismatchError,
    SignatureError,
    ThresholdError,
    VerificationError,
)
from audit.keyset import KeySet, walk_keysets
from audit.log import MemoryNodeStore, MerkleLog
from audit.merkle import b64decode, b64encode, leaf_hash, verify_consistency
from audit.note import (
    SIG_COSIGNATURE,
    SIG_ED25519,
    Checkpoint,
    Note,
    NoteVerifier,
    SignedCheckpoint,
    open_checkpoint,
)
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
    newest_checkpoint: str = ""
    """The export's newest checkpoint note, as signed: what a verifier keeps for its next `--checkpoint`."""


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


def _revoked_only(signed: SignedCheckpoint, keyset: KeySet) -> datetime | None:
    """When every audit key that signed the note is revoked: the earliest revocation time, else None."""
    infos = [keyset.keys[key_id(s.public_key)] for s in signed.note.signatures if s.sig_type == SIG_ED25519]
    times = [i.revoked_at for i in infos if i.revoked_at is not None]
    return min(times) if infos and len(times) == len(infos) else None


def _check_signing_time(signed: SignedCheckpoint, keyset: KeySet, entries: list[AuditEntry], where: str) -> None:
    """The audit key must have been usable when the checkpoint could first have been signed (entry size-1),
    and not revoked: a revoked key never counts, whatever the time (the hub re-signs when it revokes)."""
    revoked = _revoked_only(signed, keyset)
    if revoked is not None:
        raise RevokedKeyError(
            f"{where}: signed only by an audit key revoked at {format_time(revoked)}; a revoked key never "
            "counts (a revoking hub re-signs its checkpoints: export again)"
        )
    size = signed.checkpoint.size
    if not size:
        return
    t = entries[size - 1].time
    usable = [
        s
        for s in signed.note.signatures
        if s.sig_type == SIG_ED25519 and keyset.keys[key_id(s.public_key)].usable_at(t)
    ]
    if not usable:
        raise SignatureError(f"{where}: signed by an audit key not valid at {format_time(t)}")


def _check_kept(
    name: str,
    data: bytes,
    origin: str,
    keyset: KeySet,
    entries: list[AuditEntry],
    log: MerkleLog,
    roots: dict[int, bytes],
    notes: list[str],
) -> Checkpoint:
    """Hold the export to a checkpoint the verifier kept: the export must extend it (no rollback, no fork).

    `roots`: the export's verified checkpoints, size -> root. A kept checkpoint signed only by an audit key
    revoked since proves nothing by its signature (the key's thief could have made it): it is accepted, with a
    note, only when its root is the one this export's validly signed checkpoints commit to at its size, and
    refused as revoked otherwise (never reported as a fork).
    """
    newest = max(roots)
    where = f"kept checkpoint {name}"
    try:
        body = Checkpoint.from_text(Note.parse(data).text)
    except VerificationError as e:
        raise type(e)(f"{where}: {e}") from e
    if body.origin != origin:
        raise FormatError(f"{where}: origin {body.origin!r} is not this export's {origin!r}")
    try:
        signed = open_checkpoint(data, origin, list(keyset.role_keys("audit").values()))
    except VerificationError as e:
        raise type(e)(f"{where}: {e} (not signed by an audit key of this export's key sets)") from e
    kept = signed.checkpoint
    if kept.size > len(entries):
        raise LogError(
            f"{where}: the hub signed a log of {kept.size} entries, this export holds only {len(entries)}: "
            "the log was rolled back (a shorter log)"
        )
    if kept.size > newest:
        raise LogError(
            f"{where}: the hub signed size {kept.size}, this export's newest checkpoint is size {newest}: "
            "its newer checkpoints were rolled back or withheld"
        )
    revoked = _revoked_only(signed, keyset)
    if revoked is not None:
        if log.root(kept.size) != kept.root:
            raise RevokedKeyError(
                f"{where}: signed only by an audit key revoked at {format_time(revoked)}, and its root is not "
                f"this export's at size {kept.size}: a revoked key's note proves nothing (not evidence of a fork)"
            )
        notes.append(
            f"{where} is signed by an audit key revoked at {format_time(revoked)}; its root at size {kept.size} "
            "is the one this export's validly signed checkpoints commit to: keep a re-signed checkpoint instead"
        )
        return kept
    _check_signing_time(signed, keyset, entries, where)
    if roots.get(kept.size, kept.root) != kept.root:
        raise RootMismatchError(
            f"{where}: fork at size {kept.size}: the hub signed root {b64encode(kept.root)}, and root "
            f"{b64encode(roots[kept.size])} in this export; two signed checkpoints that cannot both be true"
        )
    recomputed = log.root(kept.size)
    if recomputed != kept.root:
        raise RootMismatchError(
            f"{where}: fork: at size {kept.size} the hub signed root {b64encode(kept.root)}, this export's "
            f"entries give root {b64encode(recomputed)} (entries before seq {kept.size} were rewritten)"
        )
    if kept.size:
        try:
            # RFC 9162 2.1.4.2: the newest checkpoint must extend the kept one.
            verify_consistency(kept.size, newest, kept.root, roots[newest], log.consistency_proof(kept.size, newest))
        except ProofError as e:
            raise type(e)(f"{where}: fork: no consistency from size {kept.size} to {newest}: {e}") from e
    return kept


def _posix(t: int | None) -> str:
    try:
        return format_time(datetime.fromtimestamp(t or 0, UTC))
    except (OverflowError, OSError, ValueError):
        return f"POSIX time {t}"


def _check_witnesses(
    note: str, origin: str, keyset: KeySet, witnesses: Sequence[NoteVerifier], threshold: int
) -> tuple[str, list[str]]:
    """Count the given witnesses' valid `cosignature/v1` lines on the newest checkpoint (c2sp.org/tlog-cosignature)."""
    audit_keys = list(keyset.role_keys("audit").values())
    size = Checkpoint.from_text(Note.parse(note).text).size
    where = f"checkpoint {size}"
    try:
        # A known key's bad signature rejects the note (c2sp.org/signed-note): a witness line over another body fails.
        signed = open_checkpoint(note, origin, audit_keys, witnesses)
    except VerificationError as e:
        raise type(e)(f"{where}: {e} (a witness cosignature over another checkpoint body)") from e
    cosigned = {
        (s.name, s.public_key): s.time for s in signed.note.signatures if s.sig_type == SIG_COSIGNATURE
    }
    if len(cosigned) < threshold:
        missing = sorted({w.name for w in witnesses if (w.name, w.public_key) not in cosigned})
        raise ThresholdError(
            f"{where}: cosigned by {len(cosigned)} of the {len(witnesses)} given witnesses, {threshold} "
            f"required (no valid cosignature/v1 from {', '.join(missing)})"
        )
    notes = [f"witness {name} cosigned {where} at {_posix(t)}" for (name, _), t in sorted(cosigned.items())]
    return f"cosigned by {len(cosigned)} of {len(witnesses)} witnesses (threshold {threshold})", notes


def _verify(
    root: Path,
    pinned: str | None,
    kept: Sequence[str | Path] = (),
    witnesses: Sequence[NoteVerifier] = (),
    threshold: int = 0,
) -> Report:
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
    roots: dict[int, bytes] = {}
    newest_note = b""
    checkpoints = _numbered(root / "checkpoints", ".note")
    if not checkpoints:
        raise LogError("the export holds no checkpoint")
    for size, path in checkpoints:
        where = f"checkpoint {size}"
        newest_note = path.read_bytes()
        try:
            signed = open_checkpoint(newest_note, origin, list(audit_keys.values()))
        except VerificationError as e:
            raise type(e)(f"{where}: {e} (wrong key or edited note)") from e
        cp = signed.checkpoint
        if cp.size != size:
            raise FormatError(f"{where}: the note says size {cp.size}")
        if size > len(entries):
            raise LogError(f"{where}: the export holds only {len(entries)} entries (truncated)")
        _check_signing_time(signed, keyset, entries, where)
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
        previous, roots[size] = cp, cp.root

    held = []
    kept_notes: list[str] = []
    for name in kept:
        try:
            data = Path(name).read_bytes()
        except OSError as e:
            raise FormatError(f"kept checkpoint {name}: cannot read it: {e.strerror or e}") from e
        held.append(_check_kept(str(name), data, origin, keyset, entries, log, roots, kept_notes).size)
    newest_text = newest_note.decode("utf-8")  # open_checkpoint refused a note that is not UTF-8
    witnessed, notes = "", list[str]()
    if witnesses:
        witnessed, notes = _check_witnesses(newest_text, origin, keyset, witnesses, threshold)

    notes.extend(kept_notes)
    last = checkpoints[-1][0]
    if last < len(entries):
        notes.insert(0, _uncovered(entries, last, exported_at, interval))
    trust = "trusted on first use" if trusted.trusted_on_first_use else "pinned"
    verdict = (
        f"OK: {origin}: {len(entries)} entries, {len(checkpoints)} checkpoints consistent up to size "
        f"{last}, key set v{keyset.version} ({trust})"
    )
    if held:
        sizes = ", ".join(str(n) for n in held)
        verdict += f", extends the kept checkpoint{'s' if len(held) > 1 else ''} of size {sizes}"
    if witnessed:
        verdict += f", {witnessed}"
    return Report(
        True,
        verdict,
        len(entries),
        len(checkpoints),
        keyset.version,
        trusted.trusted_on_first_use,
        notes,
        newest_text,
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


def verify_export(
    path: str | Path,
    pinned: str | None = None,
    *,
    kept: Sequence[str | Path] = (),
    witnesses: Sequence[NoteVerifier] = (),
    witness_threshold: int | None = None,
) -> Report:
    """Verify an export folder; `pinned`: hex SHA-256 of key set v1's payload (None: trust on first use).

    `kept`: signed audit checkpoint files the verifier kept from before; the export must extend each one.
    `witnesses`: cosigner keys (type 0x04); the newest checkpoint needs `witness_threshold` (default: all) of them.
    Raises `ValueError` for witness arguments that make no sense; every verification failure is a FAIL report.
    """
    distinct = list({(w.name, w.key_hash): w for w in witnesses}.values())
    if any(w.sig_type != SIG_COSIGNATURE for w in distinct):
        raise ValueError("a witness key is a cosignature/v1 verifier key (type 0x04)")
    threshold = len(distinct) if witness_threshold is None else witness_threshold
    if witness_threshold is not None and not 1 <= threshold <= len(distinct):
        raise ValueError(f"the witness threshold is between 1 and the {len(distinct)} witnesses given")
    try:
        return _verify(Path(path), pinned, kept, distinct, threshold)
    except VerificationError as e:
        return Report(False, f"FAIL ({type(e).__name__}): {e}")
    except (OSError, json.JSONDecodeError) as e:
        return Report(False, f"FAIL (FormatError): cannot read the export: {e}")
