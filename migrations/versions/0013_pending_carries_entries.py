"""Pending changes carry their batch entry: an add the signal's type, value, quality and tags, a remove its reason.

The sealer read each pending add's signal row (a range scan of `signals` joined with the pending rows it took
out) only to copy these four columns into the batch: about a third of the database's work per batch. A
signal's hash never changes and a removal's reason is known when the remove is written, so submission and
removal now copy them into the pending row, which the sealer deletes and returns in one statement. The copies
live only until their batch is sealed.

Existing pending rows are filled from their signals. Rows written without the copies (by a hub that runs
the code before this revision) are still sealed correctly: the sealer completes them from the signal.

Revision ID: 0013_pending_carries_entries
Revises: 0012_batch_stored_once
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub import rls

revision = "0013_pending_carries_entries"
down_revision = "0012_batch_stored_once"
branch_labels = None
depends_on = None

_COLUMNS = (
    sa.Column("type", sa.String(10), nullable=True),
    sa.Column("value", sa.String(64), nullable=True),
    sa.Column("quality", sa.Integer(), nullable=True),
    sa.Column("tags", sa.Text(), nullable=True),
    sa.Column("reason", sa.String(20), nullable=True),
)


def upgrade() -> None:
    bind = op.get_bind()
    rls.set_tenant(bind, rls.SYSTEM)  # `signals` is under row-level security (forced for its owner too)
    for column in _COLUMNS:
        op.add_column("pending_changes", column)
    op.execute(
        "UPDATE pending_changes SET (type, value, quality, tags) ="
        " (SELECT s.type, s.value, s.quality, s.tags FROM signals s WHERE s.id = pending_changes.signal_id)"
        " WHERE op = 'add'"
    )
    op.execute(
        "UPDATE pending_changes SET"
        " reason = (SELECT s.removal_reason FROM signals s WHERE s.id = pending_changes.signal_id)"
        " WHERE op = 'remove'"
    )


def downgrade() -> None:
    for column in reversed(_COLUMNS):
        op.drop_column("pending_changes", column.name)
