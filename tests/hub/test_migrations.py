"""The schema comes only from migrations: they run on both databases, match the models, and keep triggers."""

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
