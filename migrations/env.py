"""Alembic environment: runs migrations online against the URL the hub's code passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from hub.db import make_engine
from hub.models import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("sqlalchemy.url is not set; run migrations through `hashfed db upgrade`")

connectable = context.config.attributes.get("connection")
if connectable is None:
    engine = make_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
else:
    context.configure(connection=connectable, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
