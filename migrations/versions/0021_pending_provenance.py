"""A pending add may carry its provenance: the upstream it was fed from (hub/upstreams, issue 22).

The sealer copies the column into the add's batch entry as its optional `provenance` member
(docs/formats.md); NULL for every hash contributed at this hub, so existing rows need nothing.

Revision ID: 0021_pending_provenance
Revises: 0020_video_md5
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021_pending_provenance"
down_revision = "0020_video_md5"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pending_changes", sa.Column("provenance", sa.Text(), nullable=True))


def downgrade() -> None:
    # A provenance waiting for the sealer is lost: its add is then sealed without one.
    op.drop_column("pending_changes", "provenance")
