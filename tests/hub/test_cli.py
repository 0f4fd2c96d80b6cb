"""`hashfed init` and `serve`: the embedded database, the public name fixed at init, ports."""

import secrets
import socket
from contextlib import closing

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from hub.app import create_app
from hub.cli.main import main
from hub.config import Settings
from hub.db import make_engine
from hub.ops import embedded
from tests.conftest import create_database, drop_database
from tests.ports import free_port


def test_init_creates_and_migrates_the_embedded_database(tmp_path):
    env = {"HASHFED_VAR_DIR": str(tmp_path / "var")}
    runner = CliRunner()
    result = runner.invoke(main, ["init", "--base-url", "https://hub.example.org"], env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "var" / "pg" / "PG_VERSION").exists()  # the embedded PostgreSQL
    current = runner.invoke(main, ["db", "current"], env=env)
    assert current.exit_code == 0, current.output
    assert "current: " in current.output and "(none)" not in current.output
    again = runner.invoke(main, ["init"], env=env)  # the recorded base URL is used again
    assert again.exit_code == 0, again.output
    assert "base URL: https://hub.example.org" in again.output


def test_db_current_fails_on_an_unmigrated_database(tmp_path):
    url, name = create_database(migrate_to=None)
    try:
        result = CliRunner().invoke(main, ["db", "current"], env={"HASHFED_DATABASE_URL": url})
        assert result.exit_code == 1
        assert "hashfed db upgrade" in result.output
    finally:
        drop_database(name)


def test_a_misspelt_setting_stops_the_cli_with_a_clear_message(tmp_path):
    result = CliRunner().invoke(main, ["db", "current"], env={"HASHFED_VAR_DRI": str(tmp_path)})
    assert result.exit_code != 0
    assert "unknown setting HASHFED_VAR_DRI" in result.output


def test_the_name_fixed_at_init_is_the_only_one_served(tmp_path):
    var = tmp_path / "var"
    runner = CliRunner()
    port = free_port()
    made = runner.invoke(main, ["init", "--base-url", f"http://127.0.0.1:{port}"], env={"HASHFED_VAR_DIR": str(var)})
    assert made.exit_code == 0, made.output
    assert (var / "base_url").read_text() == f"http://127.0.0.1:{port}\n"

    # Another port is another name: init refuses it and keeps the record.
    other = free_port()
    moved = runner.invoke(main, ["init", "--base-url", f"http://127.0.0.1:{other}"], env={"HASHFED_VAR_DIR": str(var)})
    assert moved.exit_code != 0 and f"names this hub '127.0.0.1:{port}'" in moved.output, moved.output
    assert (var / "base_url").read_text() == f"http://127.0.0.1:{port}\n"

    # Serving under another base URL is refused before anything listens or runs.
    env = {"HASHFED_VAR_DIR": str(var), "HASHFED_BASE_URL": f"http://127.0.0.1:{other}"}
    refused = runner.invoke(main, ["serve", "--port", str(other)], env=env)
    assert refused.exit_code != 0 and "no verifier accepts" in refused.output, refused.output

    # A hub started some other way under the wrong name is not ready, and says why.
    server = embedded.start(var)
    try:
        wrong = Settings.from_env(env).replace(database_url=server.app_url)
        ready = create_app(wrong).test_client().get("/readyz")
        assert ready.status_code == 503 and f"names this hub '127.0.0.1:{port}'" in ready.json["reason"]
        right = Settings.from_env({"HASHFED_VAR_DIR": str(var)}).replace(database_url=server.app_url)
        assert right.base_url == f"http://127.0.0.1:{port}"  # read back from the record
        assert create_app(right).test_client().get("/readyz").status_code == 200
    finally:
        server.close()


def test_a_busy_port_is_a_one_line_error_before_anything_starts(tmp_path):
    runner = CliRunner()
    with closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"HASHFED_VAR_DIR": str(tmp_path / "var")}
        first = runner.invoke(main, ["init", "--base-url", f"http://127.0.0.1:{port}"], env=env)
        assert first.exit_code != 0 and f"port {port} on 127.0.0.1 is in use" in first.output
        # Nothing was fixed under a name that cannot be served: no recorded base URL, no keys.
        assert not (tmp_path / "var" / "base_url").exists() and not (tmp_path / "var" / "keys").exists()

        made = runner.invoke(main, ["init", "--base-url", "https://hub.example.org"], env=env)
        assert made.exit_code == 0, made.output
        busy = runner.invoke(main, ["serve", "--port", str(port)], env=env)
        assert busy.exit_code != 0
        assert busy.output.strip().splitlines() == [
            f"Error: port {port} on 127.0.0.1 is in use; is the hub already running? Listen on another with "
            "--port or HASHFED_PORT (the public name stays https://hub.example.org)"
        ]
        assert isinstance(busy.exception, SystemExit)  # a message, not a traceback


@pytest.mark.postgres_only
def test_db_grant_creates_the_application_role_with_a_password_from_the_environment(fresh_database):
    role = f"hashfed_app_{secrets.token_hex(3)}"
    env = {"HASHFED_DATABASE_URL": fresh_database.url, "APP_PASSWORD_FOR_TEST": "a long app password"}
    runner = CliRunner()
    try:
        unset = runner.invoke(main, ["db", "grant", role, "--create", "--password-env", "NOT_SET_ANYWHERE"], env=env)
        assert unset.exit_code != 0 and "NOT_SET_ANYWHERE is empty or unset" in unset.output
        done = runner.invoke(main, ["db", "grant", role, "--create", "--password-env", "APP_PASSWORD_FOR_TEST"],
                             env=env)
        assert done.exit_code == 0, done.output
        assert "a long app password" not in done.output
        admin = make_engine(fresh_database.url)
        with admin.connect() as conn:
            stored = conn.scalar(text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"), {"r": role})
            assert stored and stored.startswith(("SCRAM-SHA-256$", "md5")) and "a long app password" not in stored
            may_insert = conn.scalar(text("SELECT has_table_privilege(:r, 'audit_entries', 'INSERT')"), {"r": role})
            may_update = conn.scalar(text("SELECT has_table_privilege(:r, 'audit_entries', 'UPDATE')"), {"r": role})
            assert may_insert and not may_update  # the application role's grants, append-only
        admin.dispose()
    finally:
        admin = make_engine(fresh_database.url)
        with admin.begin() as conn:
            if conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}):
                conn.execute(text(f"DROP OWNED BY {role}"))
                conn.execute(text(f"DROP ROLE {role}"))
        admin.dispose()
