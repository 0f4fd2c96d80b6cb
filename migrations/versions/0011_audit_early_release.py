"""Audit log: early lock release at commit, unless the transaction publishes a signed statement (PostgreSQL).

Every audited transaction holds the lock on the next audit seq (`audit_head`) until it ends, so that seqs stay
gapless. With a synchronous commit that includes the commit's WAL flush (an fsync), so writers queue behind
each other's flushes and cannot share them. `hub.transparency.auditlog.record` now asks for early release
(`hashfed.early_release`); a deferred constraint trigger on `audit_entries` decides at commit time:

- the transaction wrote none of the tables that hold signed, published statements (checkpoints, batches,
  collection heads and descriptors, key sets, and the tree nodes proofs are built from): it commits with
  `synchronous_commit = off`; the lock is released once the commit record is written, and the hub flushes
  the WAL through it before the commit returns to the caller (`hub.db._await_durable`);
- it did: the commit stays synchronous, so nothing signed is ever visible before it is durable (a statement
  signed, served and then lost in a crash could be signed again differently: a fork).

`hashfed.commit_mode` (session level) tells which one the last audited commit took: `early` or `synchronous`.

Revision ID: 0011_audit_early_release
Revises: 0010_feed_keys_collate_c
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0011_audit_early_release"
down_revision = "0010_feed_keys_collate_c"
branch_labels = None
depends_on = None

# Tables whose rows are, or are proofs of, signed statements served to partners and regulators.
PUBLISHING_TABLES = (
    "audit_nodes",
    "audit_checkpoints",
    "batches",
    "collection_nodes",
    "collection_checkpoints",
    "collection_heads",
    "collections",
    "key_sets",
)

_MARK_FUNCTION = """
CREATE OR REPLACE FUNCTION hashfed_mark_publishing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('hashfed.publishing', 'on', true);
    RETURN NULL;
END
$$
"""

_DECIDE_FUNCTION = """
CREATE OR REPLACE FUNCTION hashfed_commit_durability() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('hashfed.publishing', true), '') = 'on' THEN
        PERFORM set_config('hashfed.commit_mode', 'synchronous', false);
    ELSE
        PERFORM set_config('synchronous_commit', 'off', true);
        PERFORM set_config('hashfed.commit_mode', 'early', false);
    END IF;
    RETURN NULL;
END
$$
"""

DECIDE_TRIGGER = "audit_entries_commit_durability"


def mark_trigger(table: str) -> str:
    return f"{table}_publishing"


def upgrade() -> None:
    op.execute(_MARK_FUNCTION)
    for table in PUBLISHING_TABLES:
        name = mark_trigger(table)
        op.execute(
            f"CREATE TRIGGER {name} AFTER INSERT OR UPDATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION hashfed_mark_publishing()"
        )
        op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}")
    op.execute(_DECIDE_FUNCTION)
    # Queued only when record() asked (the WHEN is evaluated at the insert); fired at COMMIT, after every
    # statement of the transaction, before the commit record is written.
    op.execute(
        f"CREATE CONSTRAINT TRIGGER {DECIDE_TRIGGER} AFTER INSERT ON audit_entries "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
        "WHEN (current_setting('hashfed.early_release', true) = 'on') "
        "EXECUTE FUNCTION hashfed_commit_durability()"
    )
    op.execute(f"ALTER TABLE audit_entries ENABLE ALWAYS TRIGGER {DECIDE_TRIGGER}")


def downgrade() -> None:
    op.execute(f"DROP TRIGGER IF EXISTS {DECIDE_TRIGGER} ON audit_entries")
    op.execute("DROP FUNCTION IF EXISTS hashfed_commit_durability()")
    for table in PUBLISHING_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {mark_trigger(table)} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS hashfed_mark_publishing()")
