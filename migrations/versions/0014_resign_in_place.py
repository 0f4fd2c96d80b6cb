"""Signed rows may have their signatures replaced, and nothing else: what a revoked key signed is re-signed.

`hashfed keys revoke` publishes a key set marking the key revoked; a verifier then refuses everything that
key signed, whatever time a payload claims. So the hub re-signs, in the same transaction, every batch
envelope (`batches.signatures`), collection checkpoint and audit checkpoint note it signed with the current
key of its role. The append-only triggers of these three tables now let through an UPDATE that sets that one
column and no other (payload, size and root stay immutable, so every log and root is unchanged); DELETE
and TRUNCATE stay refused, and the application role gets UPDATE on that column only (hub/ops/dbroles.py).

The downgrade installs the strict triggers again (re-signed rows stay as they are: their signatures verify).

Revision ID: 0014_resign_in_place
Revises: 0013_pending_carries_entries
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from hub.transparency import appendonly

revision = "0014_resign_in_place"
down_revision = "0013_pending_carries_entries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    for table in appendonly.RESIGNABLE:
        appendonly.uninstall(bind, table)
        appendonly.install(bind, table)


def downgrade() -> None:
    bind = op.get_bind()
    for table in appendonly.RESIGNABLE:
        appendonly.uninstall(bind, table)
        appendonly.install(bind, table, resignable=False)
