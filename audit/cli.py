"""`hashfed-audit`: verify a hub's audit log export offline, with nothing but this package."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from audit.errors import VerificationError
from audit.export import verify_export
from audit.exports import verify_bundle
from audit.note import SIG_COSIGNATURE, Checkpoint, Note, NoteVerifier


def _witness_key(value: str) -> NoteVerifier:
    """A `--witness` argument: a signed-note verifier key of type 0x04 (c2sp.org/tlog-cosignature)."""
    try:
        verifier = NoteVerifier.from_vkey(value)
    except VerificationError as e:
        raise argparse.ArgumentTypeError(f"not a verifier key name+hash+base64: {e}") from e
    if verifier.sig_type != SIG_COSIGNATURE:
        raise argparse.ArgumentTypeError("a witness key is a cosignature/v1 verifier key (type 0x04)")
    return verifier


def _save(path: Path, note: str) -> None:
    """Replace `path` with `note` atomically: a crash leaves the previous kept checkpoint, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(note.encode("utf-8"))  # byte for byte: no newline translation
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the command, return the exit status (0 only when everything verifies)."""
    parser = argparse.ArgumentParser(prog="hashfed-audit", description="Verify hashfed artifacts offline.")
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="verify an audit log export folder")
    verify.add_argument("dir", help="the export folder")
    verify.add_argument(
        "--keyset-sha256",
        metavar="DIGEST",
        help="hex SHA-256 of key set v1's payload (without it: trust on first use)",
    )
    verify.add_argument(
        "--checkpoint",
        metavar="FILE",
        action="append",
        default=[],
        help="a signed audit checkpoint kept from an earlier export or GET /v1/audit/checkpoint: the export must "
        "extend it, else it fails as rolled back or forked (repeatable)",
    )
    verify.add_argument(
        "--save-checkpoint",
        "--keep",
        metavar="FILE",
        type=Path,
        help="when the export verifies, write its newest checkpoint to FILE, for --checkpoint FILE next time",
    )
    verify.add_argument(
        "--witness",
        metavar="VKEY",
        action="append",
        default=[],
        type=_witness_key,
        help="a witness's cosignature/v1 verifier key name+hash+base64: the newest checkpoint must carry its "
        "cosignature (repeatable)",
    )
    verify.add_argument(
        "--witness-threshold",
        metavar="N",
        type=int,
        help="how many of the given witnesses must have cosigned (default: all of them)",
    )
    bundle = sub.add_parser("verify-export", help="verify a transparency export bundle (zip) offline")
    bundle.add_argument("bundle", help="the bundle file")
    bundle.add_argument(
        "--keyset-sha256",
        metavar="DIGEST",
        help="hex SHA-256 of key set v1's payload (without it: trust on first use)",
    )
    args = parser.parse_args(argv)
    if args.command == "verify-export":
        checked = verify_bundle(args.bundle, args.keyset_sha256)
        print(checked.verdict)
        if checked.ok and args.keyset_sha256 is None:
            print("note: key set v1 trusted on first use; pass --keyset-sha256 to pin it")
        for note in checked.notes:
            print(f"note: {note}")
        return 0 if checked.ok else 1
    witnesses = {w.to_vkey(): w for w in args.witness}
    if args.witness_threshold is not None and not 1 <= args.witness_threshold <= len(witnesses):
        parser.error(f"--witness-threshold is between 1 and the {len(witnesses)} distinct --witness keys given")

    report = verify_export(
        args.dir,
        args.keyset_sha256,
        kept=args.checkpoint,
        witnesses=list(witnesses.values()),
        witness_threshold=args.witness_threshold,
    )
    print(report.verdict)
    for note in report.notes:
        print(f"note: {note}")
    if not report.ok:
        return 1
    if args.save_checkpoint is not None:
        try:
            _save(args.save_checkpoint, report.newest_checkpoint)
        except OSError as e:
            print(f"error: cannot keep the newest checkpoint in {args.save_checkpoint}: {e}", file=sys.stderr)
            return 1
        size = Checkpoint.from_text(Note.parse(report.newest_checkpoint).text).size
        print(f"kept: checkpoint {size} in {args.save_checkpoint}, for --checkpoint next time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
