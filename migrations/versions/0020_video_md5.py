"""Signals may be of type `video_md5`: the MD5 of a video file's bytes, matched exactly like `md5` but a type
of its own (issue 23). Its value is 32 hex digits, so the value columns keep their width; only the type's
CHECK constraint widens. `vpdq` values (lists of frames) are not taken by the feed yet.

Revision ID: 0020_video_md5
Revises: 0019_compat_api_keys
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0020_video_md5"
down_revision = "0019_compat_api_keys"
branch_labels = None
depends_on = None

_CHECK = "ck_signals_type"


def upgrade() -> None:
    op.drop_constraint(_CHECK, "signals", type_="check")
    op.create_check_constraint(_CHECK, "signals", "type IN ('pdq', 'md5', 'sha256', 'video_md5')")


def downgrade() -> None:
    # Fails while a video_md5 signal exists: retract or retire them first (their batches stay signed as they are).
    op.drop_constraint(_CHECK, "signals", type_="check")
    op.create_check_constraint(_CHECK, "signals", "type IN ('pdq', 'md5', 'sha256')")
