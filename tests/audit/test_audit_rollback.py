"""`hashfed-audit verify --checkpoint/--save-checkpoint/--witness`: a rolled-back or forked log, re-signed
correctly, verifies on its own, and fails against a checkpoint the verifier kept or without witness cosignatures."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from audit.export import manifest_for, verify_export, write_export
from audit.log import MemoryNodeStore, MerkleLog
from audit.merkle import leaf_hash
from audit.note import SIG_COSIGNATURE, SIG_ED25519, Checkpoint, NoteVerifier, cosign_note, sign_checkpoint, sign_note
from audit.signing import Signer
from tests.audit.audit_testkit import HUB, NOW, seeded
from tests.audit.test_audit_export import AUDIT, KEYSETS, ORIGIN, PIN, STRANGER, entries, run

T = int(NOW.timestamp())  # cosignature time: fixed, never today's
W1, W2, W3 = seeded(31), seeded(32), seeded(33)
WITNESSES = {"w1": W1, "w2": W2, "w3": W3}


def name(w: str) -> str:
    return f"witness.example/{w}"


def vkey(w: str, signer: Signer | None = None) -> str:
    return NoteVerifier(name(w), (signer or WITNESSES[w]).public_key, SIG_COSIGNATURE).to_vkey()


def signed(data: list[bytes], sizes: Sequence[int], signer: Signer = AUDIT, origin: str = ORIGIN) -> dict[int, str]:
    """Checkpoint notes at `sizes` over `data`, each correctly signed, as a database owner with the key would."""
    log = MerkleLog(MemoryNodeStore())
    log.append([leaf_hash(e) for e in data])
    return {size: sign_checkpoint(Checkpoint(origin, size, log.root(size)), signer) for size in sizes}


def export(path: Path, data: list[bytes], notes: dict[int, str]) -> Path:
    write_export(path, KEYSETS, data, list(notes.values()), manifest_for(HUB, NOW))
    return path


def keep(path: Path, note: str) -> Path:
    path.write_text(note, encoding="utf-8")
    return path


HONEST = entries(10)
HONEST_NOTES = signed(HONEST, (4, 7, 10))


def root_b64(note: str) -> str:
    return note.split("\n")[2]


# (kept checkpoint size from the honest log, the export the owner made after rolling back, the verdict)
ROLLBACKS: list[tuple[int, Callable[[], tuple[list[bytes], dict[int, str]]], str]] = [
    (
        10,
        lambda: (entries(7), signed(entries(7), (4, 7))),
        "FAIL (LogError): kept checkpoint kept.note: the hub signed a log of 10 entries, this export holds only 7: "
        "the log was rolled back (a shorter log)",
    ),
    (
        10,
        lambda: (entries(10), signed(entries(10), (4, 7))),
        "FAIL (LogError): kept checkpoint kept.note: the hub signed size 10, this export's newest checkpoint is "
        "size 7: its newer checkpoints were rolled back or withheld",
    ),
    (
        10,
        lambda: (entries(10, fork_at=8), signed(entries(10, fork_at=8), (4, 7, 10))),
        "FAIL (RootMismatchError): kept checkpoint kept.note: fork at size 10: the hub signed root ",
    ),
    (
        10,
        lambda: (entries(12, fork_at=8), signed(entries(12, fork_at=8), (4, 7, 12))),
        "FAIL (RootMismatchError): kept checkpoint kept.note: fork: at size 10 the hub signed root ",
    ),
    (
        7,
        lambda: (entries(10, fork_at=5), signed(entries(10, fork_at=5), (4, 10))),
        "FAIL (RootMismatchError): kept checkpoint kept.note: fork: at size 7 the hub signed root ",
    ),
]


@pytest.mark.parametrize(
    ("kept_size", "rolled_back", "verdict"),
    ROLLBACKS,
    ids=[
        "rolled back from 10 to 7 entries",
        "checkpoint 10 withheld, entries kept",
        "forked at the kept size",
        "rolled back to 7 and regrown to 12 otherwise",
        "forked below the kept size, no checkpoint there",
    ],
)
def test_a_consistent_rollback_passes_alone_and_fails_against_a_kept_checkpoint(
    tmp_path: Path,
    kept_size: int,
    rolled_back: Callable[[], tuple[list[bytes], dict[int, str]]],
    verdict: str,
) -> None:
    data, notes = rolled_back()
    path = export(tmp_path / "export", data, notes)
    kept = keep(tmp_path / "kept.note", HONEST_NOTES[kept_size])

    code, out = run(path, "--keyset-sha256", PIN)
    assert code == 0 and out.startswith("OK:"), out

    code, out = run(path, "--keyset-sha256", PIN, "--checkpoint", str(kept))
    assert code == 1
    assert out.replace(str(tmp_path) + "/", "").startswith(verdict), out
    assert len(out.splitlines()) == 1


def test_a_fork_at_the_same_size_names_both_signed_roots(tmp_path: Path) -> None:
    forked = signed(entries(10, fork_at=8), (4, 7, 10))
    path = export(tmp_path / "export", entries(10, fork_at=8), forked)
    kept = keep(tmp_path / "kept.note", HONEST_NOTES[10])
    report = verify_export(path, PIN, kept=[kept])
    assert not report.ok
    honest_root, forked_root = root_b64(HONEST_NOTES[10]), root_b64(forked[10])
    assert honest_root != forked_root
    assert honest_root in report.verdict and forked_root in report.verdict
    assert "two signed checkpoints that cannot both be true" in report.verdict


def test_an_honest_longer_export_extends_kept_checkpoints_and_saves_its_newest(tmp_path: Path) -> None:
    path = export(tmp_path / "june", HONEST, HONEST_NOTES)
    kept4, kept7 = keep(tmp_path / "4.note", HONEST_NOTES[4]), keep(tmp_path / "7.note", HONEST_NOTES[7])
    saved = tmp_path / "kept.note"

    kept = ["--checkpoint", str(kept4), "--checkpoint", str(kept7)]
    code, out = run(path, "--keyset-sha256", PIN, *kept, "--keep", str(saved))
    assert code == 0, out
    assert "extends the kept checkpoints of size 4, 7" in out.splitlines()[0]
    assert f"kept: checkpoint 10 in {saved}" in out
    assert saved.read_text() == HONEST_NOTES[10]

    # The same kept checkpoint verifies the same export again (equal size, equal root).
    assert run(path, "--keyset-sha256", PIN, "--checkpoint", str(saved))[0] == 0

    # Next period: the log grew; the saved checkpoint holds the hub to it, and is replaced by the newest.
    longer = entries(13)
    later = export(tmp_path / "july", longer, signed(longer, (4, 7, 10, 13)))
    code, out = run(later, "--keyset-sha256", PIN, "--checkpoint", str(saved), "--save-checkpoint", str(saved))
    assert code == 0 and "extends the kept checkpoint of size 10" in out, out
    assert saved.read_text() == signed(longer, [13])[13]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    # Handing the June export out again is now a rollback.
    code, out = run(path, "--keyset-sha256", PIN, "--checkpoint", str(saved))
    assert code == 1 and "this export holds only 10" in out


def test_a_failed_verification_keeps_the_old_checkpoint(tmp_path: Path) -> None:
    path = export(tmp_path / "export", entries(7), signed(entries(7), (4, 7)))
    kept = keep(tmp_path / "kept.note", HONEST_NOTES[10])
    code, out = run(path, "--checkpoint", str(kept), "--save-checkpoint", str(kept))
    assert code == 1 and "rolled back" in out
    assert kept.read_text() == HONEST_NOTES[10]
    other = tmp_path / "new.note"
    assert run(path, "--checkpoint", str(kept), "--save-checkpoint", str(other))[0] == 1
    assert not other.exists()


def _root(size: int) -> bytes:
    return base64.b64decode(root_b64(HONEST_NOTES[size]))


REFUSED: list[tuple[Callable[[Path], Path], str]] = [
    (
        lambda d: keep(d / "kept.note", sign_checkpoint(Checkpoint(ORIGIN, 10, _root(10)), STRANGER)),
        "FAIL (SignatureError): kept checkpoint kept.note: no known key signed this note (not signed by an audit "
        "key of this export's key sets)",
    ),
    (
        lambda d: keep(d / "kept.note", sign_checkpoint(Checkpoint(ORIGIN, 50, _root(10)), STRANGER)),
        "FAIL (SignatureError): kept checkpoint kept.note: no known key signed this note",
    ),
    (
        lambda d: keep(d / "kept.note", sign_checkpoint(Checkpoint("other.example/audit", 10, _root(10)), AUDIT)),
        "FAIL (FormatError): kept checkpoint kept.note: origin 'other.example/audit' is not this export's "
        "'hub.example.org/audit'",
    ),
    (
        lambda d: keep(d / "kept.note", signed(HONEST, [10], origin=f"{HUB}/collections/c1")[10]),
        "FAIL (FormatError): kept checkpoint kept.note: origin 'hub.example.org/collections/c1' is not",
    ),
    (
        lambda d: keep(d / "kept.note", HONEST_NOTES[10].replace("\n10\n", "\n12\n", 1)),
        "FAIL (SignatureError): kept checkpoint kept.note: signature by hub.example.org/audit does not verify",
    ),
    (
        lambda d: keep(d / "kept.note", "hub.example.org/audit\n10\n"),
        "FAIL (FormatError): kept checkpoint kept.note: a note needs a blank line",
    ),
    (lambda d: d / "kept.note", "FAIL (FormatError): kept checkpoint kept.note: cannot read it"),
]


@pytest.mark.parametrize(
    ("make", "verdict"),
    REFUSED,
    ids=[
        "signed by a stranger key",
        "stranger key claiming a longer log",
        "another hub's audit log",
        "a collection checkpoint",
        "edited after signing",
        "not a signed note",
        "missing file",
    ],
)
def test_a_kept_checkpoint_must_be_this_hubs_signed_audit_checkpoint(
    tmp_path: Path, make: Callable[[Path], Path], verdict: str
) -> None:
    path = export(tmp_path / "export", HONEST, HONEST_NOTES)
    code, out = run(path, "--keyset-sha256", PIN, "--checkpoint", str(make(tmp_path)))
    assert code == 1
    assert out.replace(str(tmp_path) + "/", "").startswith(verdict), out


def cosigned(note: str, *who: str, signer: Signer | None = None) -> str:
    for w in who:
        note = cosign_note(note, name(w), signer or WITNESSES[w], T)
    return note


def over_another_body(note: str) -> str:
    """w1's genuine cosignature of checkpoint 7, pasted under checkpoint 10."""
    return note + cosigned(HONEST_NOTES[7], "w1").splitlines(keepends=True)[-1]


def plain_signature(note: str) -> str:
    """w1's key signs the body as an ordinary note signature (type 0x01), not a cosignature/v1."""
    return note + sign_note(HONEST_NOTES[10].split("\n\n")[0] + "\n", [(name("w1"), W1)]).splitlines(keepends=True)[-1]


# (what the owner does to checkpoint 10's note, witness arguments, the first words of the verdict)
WITNESS_CASES: list[tuple[Callable[[str], str], list[str], str]] = [
    (lambda n: cosigned(n, "w1"), ["--witness", vkey("w1")], "OK:"),
    (lambda n: n, ["--witness", vkey("w1")], "FAIL (ThresholdError): checkpoint 10: cosigned by 0 of the 1 given"),
    (
        lambda n: cosigned(n, "w1", signer=STRANGER),
        ["--witness", vkey("w1")],
        "FAIL (ThresholdError): checkpoint 10: cosigned by 0 of the 1 given",
    ),
    (
        over_another_body,
        ["--witness", vkey("w1")],
        "FAIL (SignatureError): checkpoint 10: signature by witness.example/w1 does not verify",
    ),
    (plain_signature, ["--witness", vkey("w1")], "FAIL (ThresholdError): checkpoint 10: cosigned by 0 of the 1"),
    (
        lambda n: cosigned(n, "w1", "w2"),
        ["--witness", vkey("w1"), "--witness", vkey("w2"), "--witness", vkey("w3"), "--witness-threshold", "2"],
        "OK:",
    ),
    (
        lambda n: cosigned(n, "w1", "w2", "w3"),
        ["--witness", vkey("w1"), "--witness", vkey("w2"), "--witness", vkey("w3"), "--witness-threshold", "2"],
        "OK:",
    ),
    (
        lambda n: cosigned(n, "w3"),
        ["--witness", vkey("w1"), "--witness", vkey("w2"), "--witness", vkey("w3"), "--witness-threshold", "2"],
        "FAIL (ThresholdError): checkpoint 10: cosigned by 1 of the 3 given witnesses, 2 required (no valid "
        "cosignature/v1 from witness.example/w1, witness.example/w2)",
    ),
    (
        lambda n: cosigned(n, "w1", "w1"),
        ["--witness", vkey("w1"), "--witness", vkey("w2"), "--witness", vkey("w3"), "--witness-threshold", "2"],
        "FAIL (ThresholdError): checkpoint 10: cosigned by 1 of the 3",
    ),
    (
        lambda n: cosigned(n, "w1", "w2"),
        ["--witness", vkey("w1"), "--witness", vkey("w2"), "--witness", vkey("w3")],
        "FAIL (ThresholdError): checkpoint 10: cosigned by 2 of the 3 given witnesses, 3 required",
    ),
    (
        lambda n: cosigned(n, "w1", "w2"),
        ["--witness", vkey("w1"), "--witness", vkey("w2"), "--witness-threshold", "1"],
        "OK:",
    ),
]


@pytest.mark.parametrize(
    ("cosign", "args", "verdict"),
    WITNESS_CASES,
    ids=[
        "cosigned by the witness",
        "cosignature missing",
        "cosigned by another key under the witness's name",
        "cosignature over another checkpoint body",
        "ordinary signature, not a cosignature",
        "2 of 3 cosigned, threshold 2",
        "3 of 3 cosigned, threshold 2",
        "1 of 3 cosigned, threshold 2",
        "one witness cosigned twice, threshold 2",
        "2 of 3 cosigned, threshold all",
        "2 of 2 cosigned, threshold 1",
    ],
)
def test_witness_cosignatures_on_the_newest_checkpoint(
    tmp_path: Path, cosign: Callable[[str], str], args: list[str], verdict: str
) -> None:
    notes = {**HONEST_NOTES, 10: cosign(HONEST_NOTES[10])}
    path = export(tmp_path, HONEST, notes)
    code, out = run(path, "--keyset-sha256", PIN, *args)
    assert out.startswith(verdict), out
    assert code == (0 if verdict == "OK:" else 1)
    if code == 0:
        assert "witnesses (threshold" in out.splitlines()[0]
        assert "note: witness witness.example/w1 cosigned checkpoint 10 at 2025-06-01T00:00:00Z" in out


def test_a_cosigned_older_checkpoint_does_not_stand_for_the_newest(tmp_path: Path) -> None:
    notes = {**HONEST_NOTES, 7: cosigned(HONEST_NOTES[7], "w1")}
    code, out = run(export(tmp_path, HONEST, notes), "--witness", vkey("w1"))
    assert code == 1 and out.startswith("FAIL (ThresholdError): checkpoint 10: cosigned by 0"), out


def test_the_saved_checkpoint_keeps_the_witness_cosignatures(tmp_path: Path) -> None:
    note = cosigned(HONEST_NOTES[10], "w1")
    path = export(tmp_path / "export", HONEST, {**HONEST_NOTES, 10: note})
    saved = tmp_path / "kept.note"
    code, out = run(path, "--witness", vkey("w1"), "--save-checkpoint", str(saved))
    assert code == 0, out
    assert saved.read_text() == note
    assert run(path, "--checkpoint", str(saved))[0] == 0


@pytest.mark.parametrize(
    "args",
    [
        ["--witness", vkey("w1"), "--witness-threshold", "2"],
        ["--witness", vkey("w1"), "--witness-threshold", "0"],
        ["--witness-threshold", "1"],
        ["--witness", vkey("w1"), "--witness", vkey("w1"), "--witness-threshold", "2"],
        ["--witness", NoteVerifier(name("w1"), W1.public_key, SIG_ED25519).to_vkey()],
        ["--witness", "witness.example/w1+00000000+AAAA"],
    ],
    ids=[
        "threshold above the witnesses given",
        "threshold zero",
        "threshold without witnesses",
        "one witness given twice counts once",
        "a note key, not a cosignature key",
        "malformed vkey",
    ],
)
def test_witness_arguments_that_cannot_be_met_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    path = export(tmp_path, HONEST, HONEST_NOTES)
    with pytest.raises(SystemExit) as exit_info:
        run(path, *args)
    assert exit_info.value.code == 2
    assert "--witness" in capsys.readouterr().err


def test_a_vkey_whose_base64_key_holds_a_plus_parses() -> None:
    text = vkey("w3")
    assert "+" in text.split("+", 2)[2]  # W3's key encodes with a "+"
    assert NoteVerifier.from_vkey(text) == NoteVerifier(name("w3"), W3.public_key, SIG_COSIGNATURE)


def test_the_library_refuses_a_note_key_as_a_witness(tmp_path: Path) -> None:
    path = export(tmp_path, HONEST, HONEST_NOTES)
    with pytest.raises(ValueError, match="type 0x04"):
        verify_export(path, witnesses=[NoteVerifier(name("w1"), W1.public_key, SIG_ED25519)])
