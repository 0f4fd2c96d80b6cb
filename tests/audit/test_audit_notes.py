"""Ed25519 (RFC 8032), C2SP signed notes, checkpoints and cosignatures."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from audit.errors import FormatError, SignatureError, VerificationError
from audit.merkle import leaf_hash
from audit.note import (
    SIG_COSIGNATURE,
    Checkpoint,
    NoteVerifier,
    cosign_note,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
)
from audit.signing import Ed25519Signer, key_id, verify_ed25519

VECTORS = Path(__file__).resolve().parent / "vectors"  # origin in vectors/signed-note/README.md
NEUMANN = json.loads((VECTORS / "signed-note" / "peterneumann.json").read_text())


def test_rfc8032_test_1() -> None:
    signer = Ed25519Signer.from_private_bytes(
        bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    )
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    expected = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    assert signer.public_key == public
    assert signer.sign(b"") == expected
    assert signer.key_id == key_id(public) == __import__("hashlib").sha256(public).hexdigest()
    assert verify_ed25519(public, expected, b"")
    assert not verify_ed25519(public, expected, b"x")
    assert not verify_ed25519(public, expected[:-1], b"")


def test_pem_round_trip_is_private(tmp_path: Path) -> None:
    signer = Ed25519Signer.generate()
    path = tmp_path / "key.pem"
    signer.to_pem_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Ed25519Signer.from_pem_file(path).public_key == signer.public_key
    with pytest.raises(FileExistsError):
        signer.to_pem_file(path)


def test_known_answer_note_verifies() -> None:
    verifier = NoteVerifier.from_vkey(NEUMANN["verifier_key"])
    assert verifier.to_vkey() == NEUMANN["verifier_key"]
    opened = open_note(NEUMANN["note"], [verifier])
    assert opened.text.startswith("If you think cryptography")
    assert opened.signatures[0].name == "PeterNeumann"


def test_known_answer_note_fails_on_any_changed_byte() -> None:
    verifier = NoteVerifier.from_vkey(NEUMANN["verifier_key"])
    data = NEUMANN["note"].encode()
    for i in range(len(data)):
        changed = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
        with pytest.raises(VerificationError):
            open_note(changed, [verifier])


def test_known_answer_fails_under_another_key_name() -> None:
    verifier = NoteVerifier.from_vkey(NEUMANN["verifier_key"])
    renamed = NoteVerifier("PeterNeumanm", verifier.public_key)
    with pytest.raises(SignatureError):
        open_note(NEUMANN["note"], [renamed])
    with pytest.raises(FormatError):
        NoteVerifier.from_vkey(NEUMANN["verifier_key"].replace("PeterNeumann", "PeterNeumanm"))


def test_unknown_signature_lines_are_ignored() -> None:
    a, b = Ed25519Signer.generate(), Ed25519Signer.generate()
    note = sign_note("hello\n", [("a.example", a), ("b.example", b)])
    opened = open_note(note, [NoteVerifier("b.example", b.public_key)])
    assert [s.name for s in opened.signatures] == ["b.example"]
    with pytest.raises(SignatureError, match="no known key"):
        open_note(note, [NoteVerifier("c.example", b.public_key)])


def test_one_changed_body_byte_is_rejected() -> None:
    s = Ed25519Signer.generate()
    note = sign_note("origin\n1\nbody\n", [("k", s)])
    with pytest.raises(SignatureError):
        open_note(note.replace("body", "bodY"), [NoteVerifier("k", s.public_key)])


def test_checkpoint_and_cosignature() -> None:
    log, witness = Ed25519Signer.generate(), Ed25519Signer.generate()
    cp = Checkpoint("hub.example.org/collections/c1", 5, leaf_hash(b"x"))
    note = sign_checkpoint(cp, log)
    note = cosign_note(note, "hub.example.org/timestamp", witness, 1_700_000_000)
    cosigner = NoteVerifier("hub.example.org/timestamp", witness.public_key, SIG_COSIGNATURE)
    signed = open_checkpoint(note, cp.origin, [log.public_key], [cosigner])
    assert signed.checkpoint == cp
    assert signed.cosignature_time == 1_700_000_000
    # without the cosigner key the cosignature line is ignored
    assert open_checkpoint(note, cp.origin, [log.public_key]).cosignature_time is None
    # the cosignature alone does not make a checkpoint
    with pytest.raises(SignatureError):
        open_checkpoint(note, cp.origin, [Ed25519Signer.generate().public_key], [cosigner])
    # a changed time breaks the cosignature
    forged = cosign_note(sign_checkpoint(cp, log), "hub.example.org/timestamp", witness, 1_700_000_000)
    head, _, last = forged.rstrip("\n").rpartition("\n")
    name, blob = last.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(blob))
    raw[11] ^= 1  # the low byte of the timestamp, after the 4-byte key hash
    mixed = f"{head}\n{name} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(SignatureError):
        open_checkpoint(mixed, cp.origin, [log.public_key], [cosigner])
    # a cosignature over another body fails
    moved = sign_checkpoint(Checkpoint(cp.origin, 6, cp.root), log) + forged.splitlines(keepends=True)[-1]
    with pytest.raises(SignatureError):
        open_checkpoint(moved, cp.origin, [log.public_key], [cosigner])


@pytest.mark.parametrize(
    "text",
    ["o\n1\n", "o\n01\n" + "A" * 43 + "=\n", "o\n1\nAAAA\n", "o\n1\n" + "A" * 43 + "=\next\n", "\n1\n"],
    ids=["two lines", "leading zero", "short root", "extension line", "empty origin"],
)
def test_checkpoint_rejects_malformed(text: str) -> None:
    with pytest.raises(FormatError):
        Checkpoint.from_text(text)
