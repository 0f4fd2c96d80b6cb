"""Signals may be of type `vpdq` (issue 23, docs/adr/0014): a video's frames. A signal's `value` stays 64
characters: for vpdq it is the SHA-256 of the canonical frames text, so keys, the unique index of active values,
row-level security and the COPY paths are unchanged; the text itself lives once in `vpdq_values`, keyed by
that digest, where the sealer, snapshots and the hosted matcher read it. Collections gain `vpdq_percent`, P of
the vPDQ rule, signed in their descriptor.

Revision ID: 0022_vpdq_signals
Revises: 0021_pending_provenance
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022_vpdq_signals"
down_revision = "0021_pending_provenance"
branch_labels = None
depends_on = None

_CHECK = "ck_signals_type"


def upgrade() -> None:
    op.drop_constraint(_CHECK, "signals", type_="check")
    op.create_check_constraint(_CHECK, "signals", "type IN ('pdq', 'md5', 'sha256', 'video_md5', 'vpdq')")
    op.create_table(
        "vpdq_values",
        sa.Column("sha256", sa.String(64, collation="C"), primary_key=True),
        sa.Column("frames", sa.Text(), nullable=False),
    )
    op.add_column(
        "collections", sa.Column("vpdq_percent", sa.Integer(), nullable=False, server_default=sa.text("80"))
    )
    op.create_check_constraint(
        "ck_collections_vpdq_percent", "collections", "vpdq_percent >= 1 AND vpdq_percent <= 100"
    )


def downgrade() -> None:
    # Fails while a vpdq signal exists: retract or retire them first (their batches stay signed as they are).
    op.drop_constraint("ck_collections_vpdq_percent", "collections", type_="check")
    op.drop_column("collections", "vpdq_percent")
    op.drop_table("vpdq_values")
    op.drop_constraint(_CHECK, "signals", type_="check")
    op.create_check_constraint(_CHECK, "signals", "type IN ('pdq', 'md5', 'sha256', 'video_md5')")
