"""OAuth clients, access tokens, seen assertion ids, staff users and console sessions; row-level security.

Partner-owned tables (`oauth_clients`, `access_tokens`, `users`, `console_sessions`) get forced row-level
security on PostgreSQL (hub/rls.py): a transaction sees only the rows of the tenant it set, or every row
as `system`. `oauth_used_jtis` holds no partner data; it makes a replayed client assertion fail across
processes. Secrets and tokens are stored only as digests.

Revision ID: 0004_oauth
Revises: 0002_audit_entries
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub import rls
from hub.db import UTCDateTime

revision = "0004_oauth"
down_revision = "0002_audit_entries"
branch_labels = None
depends_on = None

_RLS_TABLES = ("oauth_clients", "users", "access_tokens", "console_sessions")


def upgrade() -> None:
    op.create_table(
        "oauth_clients",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("auth_method", sa.String(32), nullable=False),
        sa.Column("jwks", sa.Text(), nullable=True),
        sa.Column("secret_digest", sa.String(64), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("default_scopes", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("rotated_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("failure_logged_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("client_id", name="pk_oauth_clients"),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name="fk_oauth_clients_partner_id_partners"),
        sa.CheckConstraint(
            "auth_method IN ('private_key_jwt', 'client_secret_basic')", name="ck_oauth_clients_auth_method"
        ),
    )
    op.create_index("ix_oauth_clients_partner_id", "oauth_clients", ["partner_id"])
    op.create_table(
        "users",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.Column("failure_logged_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name="fk_users_partner_id_partners"),
        sa.CheckConstraint("status IN ('active', 'disabled')", name="ck_users_status"),
    )
    op.create_index("ix_users_partner_id", "users", ["partner_id"])
    op.create_table(
        "access_tokens",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(36), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("digest", name="pk_access_tokens"),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name="fk_access_tokens_partner_id_partners"),
        sa.ForeignKeyConstraint(
            ["client_id"], ["oauth_clients.client_id"], name="fk_access_tokens_client_id_oauth_clients"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_access_tokens_user_id_users"),
    )
    op.create_index("ix_access_tokens_partner_id", "access_tokens", ["partner_id"])
    op.create_index("ix_access_tokens_client_id", "access_tokens", ["client_id"])
    op.create_index("ix_access_tokens_user_id", "access_tokens", ["user_id"])
    op.create_index("ix_access_tokens_expires_at", "access_tokens", ["expires_at"])
    op.create_table(
        "oauth_used_jtis",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("jti", sa.String(255), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti", name="pk_oauth_used_jtis"),
    )
    op.create_index("ix_oauth_used_jtis_expires_at", "oauth_used_jtis", ["expires_at"])
    op.create_table(
        "console_sessions",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("partner_id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("digest", name="pk_console_sessions"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_console_sessions_user_id_users"),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_console_sessions_partner_id_partners"
        ),
    )
    op.create_index("ix_console_sessions_user_id", "console_sessions", ["user_id"])
    op.create_index("ix_console_sessions_partner_id", "console_sessions", ["partner_id"])
    bind = op.get_bind()
    for table in _RLS_TABLES:
        rls.enable(bind, table, "partner_id")


def downgrade() -> None:
    bind = op.get_bind()
    for table in _RLS_TABLES:
        rls.disable(bind, table)
    op.drop_table("console_sessions")
    op.drop_table("oauth_used_jtis")
    op.drop_table("access_tokens")
    op.drop_table("users")
    op.drop_table("oauth_clients")
