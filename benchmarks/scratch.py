"""A scratch PostgreSQL database for benchmarks: migrated, the application role granted, dropped afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import make_url

from hub.db import make_engine
from hub.ops import migrate
from hub.ops.dbroles import ensure_role, grant_app_role

ADMIN = os.environ.get("HASHFED_BENCH_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres")
APP_ROLE = "hashfed_app"


@dataclass(frozen=True)
class Scratch:
    owner_url: str  # migrations and superuser work
    app_url: str  # what the serving hub would use: a role that owns no table, under row-level security


@contextmanager
def scratch_database(admin_url: str = ADMIN, role: str = APP_ROLE) -> Iterator[Scratch]:
    """Create a database from `admin_url`, migrate it, grant `role`; drop it however the benchmark ends."""
    name = f"hashfed_bench_{secrets.token_hex(4)}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    owner_url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(owner_url)
        owner = make_engine(owner_url)
        with owner.begin() as conn:
            ensure_role(conn, role)
            grant_app_role(conn, role)
        owner.dispose()
        app_url = make_url(owner_url).set(username=role, password=None).render_as_string(hide_password=False)
        yield Scratch(owner_url, app_url)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
