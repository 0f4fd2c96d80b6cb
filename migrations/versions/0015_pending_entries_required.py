"""Every pending change carries its batch entry: the sealer no longer completes a row from its signal.

Since 0013 submission and removal copy a pending add's type, value, quality and tags, and a pending remove's
reason, into the pending row; a row written without them (by a hub still running older code during that
upgrade) was completed by the sealer from its signal. That second path goes: this revision fills the copies
of any such row from its signal (a remove whose signal has no reason gets `withdrawn`, as the sealer wrote),
refuses to run if a row's signal is missing (the sealer refused to seal it too), and adds a check so that no
row without its copy can be written again. A hub that still runs code older than 0013 then fails loudly at
submission instead of having its changes sealed from rows the sealer can no longer complete.

The downgrade drops the check; the filled copies stay (0013's code reads them).

Revision ID: 0015_pending_entries_required
Revises: 0014_resign_in_place
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub import rls

revision = "0015_pending_entries_required"
down_revision = "0014_resign_in_place"
branch_labels = None
depends_on = None

# A pending add carries its type and value (quality and tags may be null), a pending remove its reason.
_CHECK = (
    "ALTER TABLE pending_changes ADD CONSTRAINT ck_pending_changes_entry CHECK"
    " ((op = 'add' AND type IS NOT NULL AND value IS NOT NULL) OR (op = 'remove' AND reason IS NOT NULL))"
)
_MISSING = (
    "SELECT collection_id, signal_id FROM pending_changes"
    " WHERE (op = 'add' AND (type IS NULL OR value IS NULL)) OR (op = 'remove' AND reason IS NULL)"
    " ORDER BY 1, 2 LIMIT 3"
)


class PendingEntryMissingError(RuntimeError):
    """A pending change has no copy of its entry and no signal to copy it from: an operator must look."""


def upgrade() -> None:
    bind = op.get_bind()
    rls.set_tenant(bind, rls.SYSTEM)  # `signals` is under row-level security (forced for its owner too)
    op.execute(
        "UPDATE pending_changes SET (type, value, quality, tags) ="
        " (SELECT s.type, s.value, s.quality, s.tags FROM signals s WHERE s.id = pending_changes.signal_id)"
        " WHERE op = 'add' AND (type IS NULL OR value IS NULL)"
    )
    op.execute(
        "UPDATE pending_changes SET reason = coalesce("
        "(SELECT s.removal_reason FROM signals s WHERE s.id = pending_changes.signal_id), 'withdrawn')"
        " WHERE op = 'remove' AND reason IS NULL"
        " AND EXISTS (SELECT 1 FROM signals s WHERE s.id = pending_changes.signal_id)"
    )
    missing = bind.execute(sa.text(_MISSING)).all()
    if missing:
        raise PendingEntryMissingError(
            f"pending changes {[tuple(r) for r in missing]} have no entry and no signal to copy it from;"
            " the sealer cannot seal them: remove them or restore their signals, then migrate again"
        )
    op.execute(_CHECK)


def downgrade() -> None:
    op.execute("ALTER TABLE pending_changes DROP CONSTRAINT ck_pending_changes_entry")
