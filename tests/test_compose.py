"""docker-compose.yml cannot run here (no Docker engine): check it parses and names real CLI commands."""

from pathlib import Path

import click
import yaml

from hub.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _resolve(argv: list[str]) -> click.Command:
    command: click.Command = main
    for word in argv[1:]:
        if word.startswith("-"):
            break
        assert isinstance(command, click.Group), f"{argv}: {command.name} takes no subcommand {word}"
        sub = command.commands.get(word)
        assert sub is not None, f"{argv}: no command {word!r} under {command.name!r}"
        command = sub
    return command


def test_compose_services_run_commands_the_cli_has():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "hub"} <= set(services)
    for name, service in services.items():
        argv = service.get("command")
        if not argv or argv[0] != "hashfed":
            continue
        command = _resolve(argv)
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        for word in argv[1:]:
            if word.startswith("--"):
                assert word in options, f"service {name}: {word} is not an option of {command.name}"


def test_compose_environment_names_only_known_settings():
    from hub.config import _ENV

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        for key in (service.get("environment") or {}):
            if key.startswith("HASHFED_"):
                assert key in _ENV, f"service {name}: unknown setting {key}"
