"""C2SP signed notes (c2sp.org/signed-note), tlog checkpoints and Ed25519 `cosignature/v1` lines.

A note is text ending in a newline, a blank line, then one or more lines `— <name> base64(key hash || sig)`.
Verification uses known (name, key) pairs: unknown signature lines are ignored, a known key's bad signature
rejects the note, and a note no known key signed is rejected.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from audit.errors import FormatError, SignatureError
from audit.merkle import HASH_SIZE, b64decode, b64encode
from audit.signing import Signer, verify_ed25519

SIG_ED25519 = 0x01
"""Signature type of ordinary Ed25519 note signatures."""
SIG_COSIGNATURE = 0x04
"""Signature type of timestamped Ed25519 cosignatures (c2sp.org/tlog-cosignature)."""

MAX_SIGNATURES = 100
_DASH = "\u2014 "
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")


def _check_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() for c in name) or _CONTROL.search(name):
        raise FormatError(f"invalid key name {name!r}")


def note_key_hash(name: str, sig_type: int, public_key: bytes) -> bytes:
    """The 4-byte key hash: SHA-256(name || 0x0A || type || public key)[:4]."""
    _check_name(name)
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def cosignature_message(text: str, timestamp: int) -> bytes:
    """What a `cosignature/v1` signs: the header line, the time line, then the note text."""
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


@dataclass(frozen=True)
class NoteVerifier:
    """A known key: its name, raw Ed25519 public key and signature type (0x01 or 0x04)."""

    name: str
    public_key: bytes
    sig_type: int = SIG_ED25519

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.public_key) != 32 or self.sig_type not in (SIG_ED25519, SIG_COSIGNATURE):
            raise FormatError("a note verifier is a 32-byte Ed25519 key of type 0x01 or 0x04")

    @property
    def key_hash(self) -> bytes:
        """The 4-byte key hash that signature lines carry."""
        return note_key_hash(self.name, self.sig_type, self.public_key)

    def to_vkey(self) -> str:
        """The verifier key string `name+hex(key hash)+base64(type || key)`."""
        return f"{self.name}+{self.key_hash.hex()}+{b64encode(bytes([self.sig_type]) + self.public_key)}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse a verifier key string, checking that its hash matches its name and key."""
        parts = vkey.split("+", 2)  # the base64 key may itself hold "+"; names and hex hashes never do
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
            raise FormatError("a vkey is name+hash+key")
        material = b64decode(parts[2], "vkey key")
        if len(material) != 33:
            raise FormatError("a vkey holds a type byte and a 32-byte key")
        verifier = cls(parts[0], material[1:], material[0])
        if verifier.key_hash.hex() != parts[1]:
            raise FormatError("vkey hash does not match its name and key")
        return verifier


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key hash and the signature bytes after it."""

    name: str
    key_hash: bytes
    signature: bytes

    def to_line(self) -> str:
        return f"{_DASH}{self.name} {b64encode(self.key_hash + self.signature)}\n"


@dataclass(frozen=True)
class Note:
    """A parsed, not yet verified signed note."""

    text: str
    signatures: tuple[NoteSignature, ...]

    @classmethod
    def parse(cls, data: str | bytes) -> Note:
        """Split a note into text and signature lines, strictly (UTF-8, no control characters but newline)."""
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise FormatError("a note must be UTF-8") from e
        if _CONTROL.search(data) or not data.endswith("\n"):
            raise FormatError("a note has no control characters but newline and ends with a newline")
        split = data.rfind("\n\n")
        if split < 0:
            raise FormatError("a note needs a blank line before its signatures")
        text, block = data[: split + 1], data[split + 2 :]
        lines = block.split("\n")[:-1]
        if not lines or len(lines) > MAX_SIGNATURES:
            raise FormatError(f"a note has 1 to {MAX_SIGNATURES} signature lines")
        sigs = []
        for line in lines:
            if not line.startswith(_DASH):
                raise FormatError("a signature line starts with an em dash and a space")
            name, sep, blob_b64 = line[len(_DASH) :].rpartition(" ")
            _check_name(name)
            blob = b64decode(blob_b64, "note signature")
            if not sep or len(blob) < 5:
                raise FormatError("a signature line is '— name base64(key hash || signature)'")
            sigs.append(NoteSignature(name, blob[:4], blob[4:]))
        return cls(text, tuple(sigs))

    def to_text(self) -> str:
        """The note as it travels."""
        return self.text + "\n" + "".join(s.to_line() for s in self.signatures)


@dataclass(frozen=True)
class VerifiedSignature:
    """A signature line that a known key verified; `time` is set for cosignatures."""

    name: str
    public_key: bytes
    sig_type: int
    time: int | None = None


@dataclass(frozen=True)
class VerifiedNote:
    """A note whose text at least one known key signed."""

    text: str
    signatures: tuple[VerifiedSignature, ...]

    def cosignature_time(self) -> int | None:
        """The newest verified cosignature time (POSIX seconds), or None without cosignatures."""
        times = [s.time for s in self.signatures if s.time is not None]
        return max(times) if times else None


def sign_note(text: str, signers: Sequence[tuple[str, Signer]]) -> str:
    """A signed note: `text` (ending in a newline) signed by each (key name, signer) with type 0x01."""
    if not text.endswith("\n") or _CONTROL.search(text):
        raise FormatError("note text ends with a newline and has no control characters")
    sigs = [
        NoteSignature(name, note_key_hash(name, SIG_ED25519, s.public_key), s.sign(text.encode()))
        for name, s in signers
    ]
    return Note(text, tuple(sigs)).to_text()


def cosign_note(note: str | bytes, name: str, signer: Signer, timestamp: int) -> str:
    """Add a `cosignature/v1` line (type 0x04) at POSIX time `timestamp` to a signed note."""
    if not 0 <= timestamp < 2**63:
        raise FormatError("a cosignature time is between 0 and 2**63 - 1")
    parsed = Note.parse(note)
    sig = timestamp.to_bytes(8, "big") + signer.sign(cosignature_message(parsed.text, timestamp))
    line = NoteSignature(name, note_key_hash(name, SIG_COSIGNATURE, signer.public_key), sig)
    return Note(parsed.text, (*parsed.signatures, line)).to_text()


def open_note(note: str | bytes, verifiers: Sequence[NoteVerifier]) -> VerifiedNote:
    """Verify a note against known keys; raise `SignatureError` unless a known key signed and none failed."""
    parsed = Note.parse(note)
    known = {(v.name, v.key_hash): v for v in verifiers}
    verified: list[VerifiedSignature] = []
    for sig in parsed.signatures:
        v = known.get((sig.name, sig.key_hash))
        if v is None:
            continue  # unknown keys are ignored, as the spec requires
        time: int | None = None
        if v.sig_type == SIG_COSIGNATURE:
            if len(sig.signature) != 72:
                raise SignatureError(f"cosignature by {sig.name} is not 72 bytes")
            time = int.from_bytes(sig.signature[:8], "big")
            ok = time < 2**63 and verify_ed25519(
                v.public_key, sig.signature[8:], cosignature_message(parsed.text, time)
            )
        else:
            ok = verify_ed25519(v.public_key, sig.signature, parsed.text.encode())
        if not ok:
            raise SignatureError(f"signature by {sig.name} does not verify")
        verified.append(VerifiedSignature(v.name, v.public_key, v.sig_type, time))
    if not verified:
        raise SignatureError("no known key signed this note")
    return VerifiedNote(parsed.text, tuple(verified))


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog checkpoint body: origin, tree size and root hash (three lines, no extensions)."""

    origin: str
    size: int
    root: bytes

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or _CONTROL.search(self.origin):
            raise FormatError("a checkpoint origin is one non-empty line")
        if type(self.size) is not int or not 0 <= self.size < 2**63 or len(self.root) != HASH_SIZE:
            raise FormatError("a checkpoint has a size in [0, 2**63) and a 32-byte root")

    def to_text(self) -> str:
        """The note text: `<origin>\\n<size>\\n<base64 root>\\n`."""
        return f"{self.origin}\n{self.size}\n{b64encode(self.root)}\n"

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body strictly."""
        lines = text.split("\n")
        if len(lines) != 4 or lines[3] != "":
            raise FormatError("a checkpoint is exactly three lines")
        if not _SIZE.fullmatch(lines[1]):
            raise FormatError("a checkpoint size is a decimal without leading zeros")
        return cls(lines[0], int(lines[1]), b64decode(lines[2], "checkpoint root"))


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint its log key signed, with the verified note (and any cosignatures)."""

    checkpoint: Checkpoint
    note: VerifiedNote

    @property
    def cosignature_time(self) -> int | None:
        """Newest verified cosignature time, POSIX seconds."""
        return self.note.cosignature_time()


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    """Sign a checkpoint as a note under the key name = origin."""
    return sign_note(checkpoint.to_text(), [(checkpoint.origin, signer)])


def open_checkpoint(
    note: str | bytes,
    origin: str,
    log_keys: Sequence[bytes],
    cosigners: Sequence[NoteVerifier] = (),
) -> SignedCheckpoint:
    """Verify a checkpoint note: expected origin, signed by one of `log_keys` under the name = origin.

    Cosigner keys (type 0x04) that signed are verified too and their times reported.
    """
    verifiers = [NoteVerifier(origin, k) for k in log_keys]
    opened = open_note(note, [*verifiers, *cosigners])
    if not any(s.sig_type == SIG_ED25519 and s.name == origin for s in opened.signatures):
        raise SignatureError(f"checkpoint of {origin} is not signed by its log key")
    checkpoint = Checkpoint.from_text(opened.text)
    if checkpoint.origin != origin:
        raise FormatError(f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")
    return SignedCheckpoint(checkpoint, opened)
