from pathlib import Path

import pytest

from hub.config import Settings
from hub.errors import ConfigError


def test_defaults_are_the_embedded_postgresql_under_var():
    s = Settings.from_env({})
    assert s.database_url == "" and not s.embedded  # the CLI starts var/pg and fills both in (hub/ops/embedded.py)
    assert s.var_dir == Path("var")
    assert s.hub_name == "127.0.0.1:8000"
    assert s.token_endpoint == "http://127.0.0.1:8000/oauth/token"


def test_reads_every_documented_variable():
    s = Settings.from_env(
        {
            "HASHFED_VAR_DIR": "/srv/hashfed",
            "HASHFED_DATABASE_URL": "postgresql://hub@db/hashfed",
            "HASHFED_BASE_URL": "https://hub.example.org",
            "HASHFED_HUB_NAME": "hub.example.org",
            "HASHFED_LOG_LEVEL": "debug",
            "HASHFED_SEAL_INTERVAL_S": "30",
            "PATH": "/usr/bin",
            "HASHFED_TEST_POSTGRES_URL": "postgresql://x",  # test harness variable, not a setting
        }
    )
    assert s.var_dir == Path("/srv/hashfed")
    assert s.token_endpoint == "https://hub.example.org/oauth/token"
    assert s.log_level == "DEBUG"
    assert s.seal_interval_s == 30


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HASHFED_DATABSE_URL": "sqlite://"}, "unknown setting HASHFED_DATABSE_URL"),
        ({"HASHFED_SEAL_INTERVAL_S": "soon"}, "HASHFED_SEAL_INTERVAL_S='soon' is malformed"),
        ({"HASHFED_SEAL_INTERVAL_S": "0"}, "must be a positive integer"),
        ({"HASHFED_BASE_URL": "ftp://hub"}, "must be an http(s) URL"),
        ({"HASHFED_DATABASE_URL": "mysql://x"}, "PostgreSQL only"),
        ({"HASHFED_DATABASE_URL": "sqlite:///var/hashfed.db"}, "PostgreSQL only"),
        ({"HASHFED_LOG_LEVEL": "LOUD"}, "not a logging level"),
        ({"HASHFED_HUB_NAME": "a/b"}, "must not contain '/'"),
        ({"HASHFED_REDIS_URL": "localhost:6379"}, "must be a redis:// URL"),
    ],
    ids=["misspelt name", "not a number", "zero interval", "bad scheme", "unsupported db", "sqlite", "bad level",
         "slash in hub name", "redis without scheme"],
)
def test_unknown_or_malformed_settings_stop_start_up(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)
