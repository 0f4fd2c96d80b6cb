"""`hashfed-intake`: run the intake (settings from HASHFED_INTAKE_* variables, partners/intake/config.py)."""

from __future__ import annotations

import argparse
import sys

from werkzeug.serving import run_simple

from partners.intake.app import check_hub, create_app
from partners.intake.config import IntakeSettings
from partners.intake.errors import IntakeError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hashfed-intake", description="The survivor intake an organisation runs.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="check the hub's key set against the pin, then serve the intake")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (put TLS in front)")
    serve.add_argument("--port", type=int, default=8080)
    sub.add_parser("check", help="check the hub's key set against the pin and exit")
    args = parser.parse_args(argv)
    try:
        settings = IntakeSettings.from_env()
        app = create_app(settings)
        version = check_hub(app, settings)
    except IntakeError as e:
        print(f"hashfed-intake: {e}", file=sys.stderr)
        return 2
    print(f"hub key set v{version} verified from the pin")
    if args.command == "serve":
        run_simple(args.host, args.port, app, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
