"""Row-level security on signals: a partner sees its own contributions and the signals of collections it
is a member of (reader or contributor); it may change only its own. Jobs, the CLI and governance act as
the SYSTEM tenant.

Contributors must see the other signals of their collection: submission deduplicates against them.

Revision ID: 0008_signals_rls
Revises: 0007_webhooks
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub import rls

revision = "0008_signals_rls"
down_revision = "0007_webhooks"
branch_labels = None
depends_on = None

MEMBERS_POLICY = "signals_collection_members"


def upgrade() -> None:
    bind = op.get_bind()
    rls.enable(bind, "signals", "contributor_id")
    # Permissive policies combine with OR: members of the collection may also read (never write) its signals.
    bind.execute(
        sa.text(
            f"CREATE POLICY {MEMBERS_POLICY} ON signals FOR SELECT USING ("  # noqa: S608 - constants only
            "collection_id IN (SELECT collection_id FROM collection_members "
            f"WHERE partner_id::text = current_setting('{rls.SETTING}', true)))"
        )
    )


def downgrade() -> None:
    bind = op.get_bind()
    bind.execute(sa.text(f"DROP POLICY IF EXISTS {MEMBERS_POLICY} ON signals"))
    rls.disable(bind, "signals")
