"""`hashfed-audit`: verify a hub's audit log export offline, with nothing but this package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from audit.export import verify_export


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
    args = parser.parse_args(argv)
    report = verify_export(args.dir, args.keyset_sha256)
    print(report.verdict)
    for note in report.notes:
        print(f"note: {note}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
