"""The kit's OAuth client against the hub's real token endpoint on loopback: both methods, and renewal."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from joserfc.jwk import ECKey

from partners.client.auth import make_session
from partners.client.config import PartnerConfig
from partners.client.errors import AuthError, ConfigError
from tests.conftest import Database
from tests.partners.realhub import RealHub


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(fresh_database: Database, tmp_path: Path) -> Iterator[tuple[RealHub, str]]:
    from werkzeug.serving import make_server

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    hub = RealHub.start(fresh_database.app_url, fresh_database.engine, tmp_path / "var", base_url=url)
    server = make_server("127.0.0.1", port, hub.app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield hub, url
    server.shutdown()
    server.server_close()


def _write(path: Path, text: str) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, text.encode())
    os.close(fd)
    return str(path)


def test_client_secret_basic_token_and_renewal(served: tuple[RealHub, str], tmp_path: Path) -> None:
    hub, url = served
    secret = _write(tmp_path / "secret", hub.secret + "\n")
    session = make_session(PartnerConfig(url, hub.client_id, hub.pin, secret_path=secret))
    assert session.get(f"{url}/v1/keys", timeout=10).status_code == 200
    first = session.token["access_token"]
    session.token["expires_at"] = int(time.time()) + 30  # inside the 60 s leeway: renewed before use
    session.get(f"{url}/v1/keys", timeout=10)
    assert session.token["access_token"] != first


def test_private_key_jwt(served: tuple[RealHub, str], tmp_path: Path) -> None:
    hub, url = served
    key = ECKey.generate_key("P-256", auto_kid=True)
    client_id = hub.add_jwt_client(key.as_dict(private=False))
    jwk = _write(tmp_path / "key.jwk", json.dumps(key.as_dict(private=True)))
    session = make_session(PartnerConfig(url, client_id, hub.pin, key_path=jwk))
    session.fetch()
    assert session.token["access_token"]
    assert "feed:read" in session.token.get("scope", "feed:read")


def test_wrong_secret_is_an_auth_error(served: tuple[RealHub, str], tmp_path: Path) -> None:
    hub, url = served
    secret = _write(tmp_path / "secret", "not-the-secret")
    session = make_session(PartnerConfig(url, hub.client_id, hub.pin, secret_path=secret))
    with pytest.raises(AuthError):
        session.fetch()


def test_public_jwk_is_refused(tmp_path: Path) -> None:
    key = ECKey.generate_key("P-256")
    jwk = _write(tmp_path / "pub.jwk", json.dumps(key.as_dict(private=False)))
    with pytest.raises(ConfigError):
        make_session(PartnerConfig("https://hub.test", "c", "ab" * 32, key_path=jwk))


def test_cli_enroll_sync_status_against_the_served_hub(served: tuple[RealHub, str], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from partners.cli.main import main

    hub, url = served
    cid = hub.create_collection("ncii-main")
    hub.submit(cid, 30)
    hub.seal(cid)
    secret = _write(tmp_path / "secret", hub.secret)
    home = str(tmp_path / "kit")
    runner = CliRunner()
    enrolled = runner.invoke(
        main,
        [
            "--home",
            home,
            "enroll",
            "--hub",
            url,
            "--client-id",
            hub.client_id,
            "--secret-file",
            secret,
            "--keyset-sha256",
            hub.pin,
        ],
    )
    assert enrolled.exit_code == 0, enrolled.output
    synced = runner.invoke(main, ["--home", home, "--log-json", "sync", "--once"])
    assert synced.exit_code == 0, synced.output
    assert f"{cid}: seq 0 -> 1" in synced.output
    status = runner.invoke(main, ["--home", home, "status", "--json"])
    row = json.loads(status.output)["collections"][0]
    assert row["collection"] == cid and row["active"] == 30 and row["last_error"] is None
    hook = "http://127.0.0.1:9/hashfed/webhook"
    registered = runner.invoke(main, ["--home", home, "webhook", hook])
    assert registered.exit_code == 0 and json.loads(registered.output)["url"] == hook, registered.output
    assert json.loads(runner.invoke(main, ["--home", home, "webhook"]).output)["url"] == hook
