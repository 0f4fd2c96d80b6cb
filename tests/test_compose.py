"""docker-compose.yml cannot run here (no Docker engine): check it parses and names real CLI commands."""

import re
import tomllib
from pathlib import Path, PurePosixPath

import click
import yaml
from sqlalchemy.engine import make_url

from hub.cli.main import main
from hub.config import Settings
from hub.proxies import parse_networks

ROOT = Path(__file__).resolve().parents[1]


def _resolve(argv: list[str]) -> click.Command:
    command: click.Command = main
    for word in argv[1:]:
        if word.startswith("-") or not isinstance(command, click.Group):
            break  # options, or a command's own arguments
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


def _expand(value: str) -> str:
    """Compose's `${VAR:-default}` interpolation with nothing set: the defaults."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _env(service: dict) -> dict[str, str]:
    return {k: _expand(str(v)) for k, v in (service.get("environment") or {}).items()}


def test_compose_serves_through_a_tls_buffering_proxy_the_hub_believes():
    services = _compose()["services"]
    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:")
    assert any(str(p).startswith("443:") for p in proxy["ports"])
    assert not services["hub"].get("ports"), "the hub is reached only through the proxy"
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert "reverse_proxy hub:8000" in caddyfile and "request_buffers" in caddyfile
    assert re.search(r"read_header \d+s", caddyfile) and re.search(r"read_body \d+s", caddyfile)
    address = proxy["networks"]["hubnet"]["ipv4_address"]
    for name in ("hub", "scheduler"):
        settings = Settings.from_env(_env(services[name]))  # a configuration the hub accepts
        assert parse_networks(settings.trusted_proxies) == parse_networks([address]), name
        assert settings.base_url.startswith("https://")


def test_compose_serves_as_the_application_role_and_keeps_the_root_key_out():
    services = _compose()["services"]
    owner = services["postgres"]["environment"]["POSTGRES_USER"]
    grant = services["grant"]["command"]
    assert grant[:3] == ["hashfed", "db", "grant"] and "--password-env" in grant
    role = grant[3]
    for name in ("hub", "scheduler"):
        user = make_url(_env(services[name])["HASHFED_DATABASE_URL"]).username
        assert user == role != owner, f"{name} connects as {user}, not the application role"
        assert services[name]["depends_on"]["grant"]["condition"] == "service_completed_successfully"
    assert make_url(_env(services["migrate"])["HASHFED_DATABASE_URL"]).username == owner
    app_password = make_url(_env(services["hub"])["HASHFED_DATABASE_URL"]).password
    assert _env(services["grant"])[grant[grant.index("--password-env") + 1]] == app_password

    init = services["migrate"]["command"]
    root = PurePosixPath(init[init.index("--root") + 1])
    mounts = {name: [str(v).split(":") for v in s.get("volumes", [])] for name, s in services.items()}
    root_volume = next(volume for volume, target, *_ in mounts["migrate"] if root.is_relative_to(target))
    keys_dir = _env(services["hub"])["HASHFED_VAR_DIR"]
    assert not root.is_relative_to(keys_dir)
    for name, volumes in mounts.items():
        if name != "migrate":
            assert root_volume not in [v[0] for v in volumes], f"{name} mounts the root key"


def test_compose_long_running_services_have_healthchecks():
    services = _compose()["services"]
    one_shot = {"migrate", "grant"}
    for name, service in services.items():
        if name not in one_shot:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert "/readyz" in " ".join(services["hub"]["healthcheck"]["test"])


def test_the_image_copies_what_the_package_build_reads():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = {word for line in dockerfile.splitlines() if line.startswith("COPY") for word in line.split()[1:-1]}
    for needed in [meta["readme"], *meta.get("license-files", [])]:
        assert needed in copied, f"the Dockerfile does not copy {needed}"
