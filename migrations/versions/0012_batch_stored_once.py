"""Batches: each batch's bytes stored once, the payload and the signatures of its envelope.

`batches` kept the payload and the whole DSSE envelope, whose `payload` member is the same bytes in base64:
a batch of 50,000 entries was about 10 MB of payload and 14 MB of envelope, both compressed, TOASTed and
written to the WAL by the sealer. The envelope's canonical JSON is a function of the payload and its
`signatures` list (RFC 8785 orders the members payload, payloadType, signatures, and base64 and the payload
type need no escaping), so the envelope column becomes `signatures`, the canonical JSON of that list, and the
hub rebuilds the envelope's exact bytes when it serves them (`hub.feed.batches.envelope_of`).

Each existing envelope is split at its `signatures` member and checked to rebuild exactly: a stored envelope
that does not is an error, not something to convert. The downgrade rebuilds the envelopes. `batches` is
append-only: its triggers are lifted for the conversion and put back.

Revision ID: 0012_batch_stored_once
Revises: 0011_audit_early_release
Create Date: 2026-11-28
"""

from __future__ import annotations

import base64

import sqlalchemy as sa
from alembic import op

from hub import rls
from hub.transparency import appendonly

revision = "0012_batch_stored_once"
down_revision = "0011_audit_early_release"
branch_labels = None
depends_on = None

_MARK = b',"signatures":'


def envelope_of(payload: bytes, signatures: bytes) -> bytes:
    """The envelope's canonical JSON from its parts (as `hub.feed.batches.envelope_of` at this revision)."""
    return b'{"payload":"%s","payloadType":"application/vnd.hashfed.batch.v1+json","signatures":%s}' % (
        base64.b64encode(payload),
        signatures,
    )


def _keys(bind: sa.Connection) -> list[tuple[str, int]]:
    keys = bind.execute(sa.text("SELECT collection_id, seq FROM batches ORDER BY collection_id, seq"))
    return [(c, int(s)) for c, s in keys]


def _one(bind: sa.Connection, columns: str, key: tuple[str, int]) -> tuple[bytes, bytes]:
    row = bind.execute(
        sa.text(f"SELECT {columns} FROM batches WHERE collection_id = :c AND seq = :s"),  # noqa: S608 - constants
        {"c": key[0], "s": key[1]},
    ).one()
    return bytes(row[0]), bytes(row[1])


def upgrade() -> None:
    bind = op.get_bind()
    rls.set_tenant(bind, rls.SYSTEM)
    op.add_column("batches", sa.Column("signatures", sa.LargeBinary(), nullable=True))
    appendonly.uninstall(bind, "batches")
    for key in _keys(bind):  # one batch at a time: each is megabytes
        payload, envelope = _one(bind, "payload, envelope", key)
        cut = envelope.rfind(_MARK)
        signatures = envelope[cut + len(_MARK) : -1]
        if cut < 0 or envelope_of(payload, signatures) != envelope:
            raise RuntimeError(f"batch {key[0]}/{key[1]}: the stored envelope is not the payload's canonical envelope")
        bind.execute(
            sa.text("UPDATE batches SET signatures = :g WHERE collection_id = :c AND seq = :s"),
            {"g": signatures, "c": key[0], "s": key[1]},
        )
    with op.batch_alter_table("batches") as b:
        b.alter_column("signatures", existing_type=sa.LargeBinary(), nullable=False)
        b.drop_column("envelope")
    appendonly.install(bind, "batches")  # the UPDATE trigger names the columns, which changed


def downgrade() -> None:
    bind = op.get_bind()
    rls.set_tenant(bind, rls.SYSTEM)
    op.add_column("batches", sa.Column("envelope", sa.LargeBinary(), nullable=True))
    appendonly.uninstall(bind, "batches")
    for key in _keys(bind):
        payload, signatures = _one(bind, "payload, signatures", key)
        bind.execute(
            sa.text("UPDATE batches SET envelope = :e WHERE collection_id = :c AND seq = :s"),
            {"e": envelope_of(payload, signatures), "c": key[0], "s": key[1]},
        )
    with op.batch_alter_table("batches") as b:
        b.alter_column("envelope", existing_type=sa.LargeBinary(), nullable=False)
        b.drop_column("signatures")
    appendonly.install(bind, "batches")
    lz4 = bind.execute(
        sa.text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
    ).scalar()
    storage = "SET COMPRESSION lz4" if lz4 else "SET STORAGE EXTERNAL"
    op.execute(f"ALTER TABLE batches ALTER COLUMN envelope {storage}")
