"""The schema comes only from migrations: they run on both databases, match the models, and keep triggers."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hub import appendonly, migrate
from hub.db import Base, make_engine
from hub.models import import_all
from tests.conftest import create_database, drop_database


def test_database_is_at_head(connection):
    assert migrate.schema_status(connection) is None


def test_models_and_migrations_agree(connection):
    import_all()
    diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_append_only_triggers_exist_at_head(connection):
    assert appendonly.missing_triggers(connection) == []


def test_full_downgrade_and_upgrade_round_trip(database, tmp_path):
    url, handle = create_database(database.backend, tmp_path)
    try:
        migrate.downgrade(url, "base")
        engine = make_engine(url)
        assert migrate.current_revisions(engine) == ()
        engine.dispose()
        migrate.upgrade(url, "heads")
        engine = make_engine(url)
        with engine.connect() as conn:
            assert migrate.schema_status(conn) is None
            assert appendonly.missing_triggers(conn) == []
        engine.dispose()
    finally:
        drop_database(database.backend, handle)


def test_the_application_role_cannot_change_the_audit_log_even_without_triggers(database):
    """On PostgreSQL the hub's role has only SELECT and INSERT on append-only tables."""
    if database.backend != "postgresql":
        pytest.skip("roles and grants are PostgreSQL's")
    from sqlalchemy import text

    from hub.appendonly import APPEND_ONLY_TABLES

    with database.engine.connect() as conn:
        for table in APPEND_ONLY_TABLES:
            for privilege, allowed in (("SELECT", True), ("INSERT", True), ("UPDATE", False),
                                       ("DELETE", False), ("TRUNCATE", False)):
                has = conn.execute(
                    text("SELECT has_table_privilege(current_user, :t, :p)"), {"t": table, "p": privilege}
                ).scalar_one()
                assert has is allowed, (table, privilege)
