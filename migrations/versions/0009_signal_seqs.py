"""Signal seqs: the batches that published a signal move out of `signals` into a narrow table of their own.

Sealing used to mark each signal's `added_seq` / `removed_seq` in place: a new version of the whole signal row
(type, value, tags, case reference, three ids...) for every hash sealed, and a full-page image of every signal
page touched for the first time since a checkpoint. `signal_seqs` holds (signal id, added seq, removed seq),
one row inserted per add when its batch is sealed and updated when a removal is; readers join it on the primary
key, and a signal without a row was never published. Existing seqs are copied over.

`signals` returns to the default fillfactor: the free half of each page was there so that sealing's updates
stayed HOT, and nothing updates a signal in bulk any more (a retraction changes `status`, which the partial
unique index reads, so it was never a HOT update).

Row-level security (PostgreSQL): a row is visible exactly when its signal is (the policy asks `signals`, whose
own policies apply), and only SYSTEM (the sealer) writes.

Revision ID: 0009_signal_seqs
Revises: 0008_signals_rls
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub import rls

revision = "0009_signal_seqs"
down_revision = "0008_signals_rls"
branch_labels = None
depends_on = None

_TENANT = f"current_setting('{rls.SETTING}', true)"
_SYSTEM_ONLY = f"({_TENANT} = '{rls.SYSTEM}')"
_READ_POLICY = "signal_seqs_visible_signal"
_WRITE_POLICY = "signal_seqs_system_writes"


def upgrade() -> None:
    bind = op.get_bind()
    # The owner may be subject to FORCE ROW LEVEL SECURITY on `signals`: read and write every row as SYSTEM.
    rls.set_tenant(bind, rls.SYSTEM)
    op.create_table(
        "signal_seqs",
        sa.Column("signal_id", sa.String(36), nullable=False),
        sa.Column("added_seq", sa.BigInteger(), nullable=False),
        sa.Column("removed_seq", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("signal_id", name="pk_signal_seqs"),
    )
    op.execute(
        "INSERT INTO signal_seqs (signal_id, added_seq, removed_seq)"
        " SELECT id, added_seq, removed_seq FROM signals WHERE added_seq IS NOT NULL"
    )
    op.drop_column("signals", "removed_seq")
    op.drop_column("signals", "added_seq")
    op.execute("ALTER TABLE signals RESET (fillfactor)")
    op.execute("ALTER TABLE signal_seqs ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE signal_seqs FORCE ROW LEVEL SECURITY")
    # Permissive policies combine with OR: SYSTEM does everything; anyone else reads the rows of visible signals
    # (SYSTEM first in both, so the sealer's and the matcher's reads never run the subquery).
    op.execute(f"CREATE POLICY {_WRITE_POLICY} ON signal_seqs USING {_SYSTEM_ONLY} WITH CHECK {_SYSTEM_ONLY}")
    op.execute(
        f"CREATE POLICY {_READ_POLICY} ON signal_seqs FOR SELECT USING ({_SYSTEM_ONLY} OR"  # noqa: S608 - constants
        " EXISTS (SELECT 1 FROM signals WHERE signals.id = signal_seqs.signal_id))"
    )


def downgrade() -> None:
    bind = op.get_bind()
    rls.set_tenant(bind, rls.SYSTEM)
    op.execute(f"DROP POLICY IF EXISTS {_READ_POLICY} ON signal_seqs")
    op.execute(f"DROP POLICY IF EXISTS {_WRITE_POLICY} ON signal_seqs")
    op.execute("ALTER TABLE signal_seqs NO FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE signal_seqs DISABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE signals SET (fillfactor = 50)")
    op.add_column("signals", sa.Column("added_seq", sa.BigInteger(), nullable=True))
    op.add_column("signals", sa.Column("removed_seq", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE signals SET"
        " added_seq = (SELECT q.added_seq FROM signal_seqs q WHERE q.signal_id = signals.id),"
        " removed_seq = (SELECT q.removed_seq FROM signal_seqs q WHERE q.signal_id = signals.id)"
        " WHERE id IN (SELECT signal_id FROM signal_seqs)"
    )
    op.drop_table("signal_seqs")
