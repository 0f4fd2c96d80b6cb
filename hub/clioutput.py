"""How `hashfed` commands print their results: labelled lines for people and scripts, or JSON."""

from __future__ import annotations

import json

import click


def emit(fields: dict[str, object], as_json: bool, note: str | None = None) -> None:
    """Print a command's result as labelled lines (`client id: ...`), or as one JSON object with --json.

    Labels are stable: scripts and the README's round trip read them. `note` is a human remark, never in JSON.
    """
    if as_json:
        click.echo(json.dumps({key.replace(" ", "_"): value for key, value in fields.items()}))
        return
    for key, value in fields.items():
        click.echo(f"{key}: {value}")
    if note:
        click.echo(note)


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
