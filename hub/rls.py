"""Row-level security on PostgreSQL: the database's backstop for tenant isolation.

Every partner-owned table gets a policy that shows and accepts only rows whose partner column equals the
transaction's tenant, `current_setting('hashfed.partner')`, set with `set_tenant()`. The value `SYSTEM`
(`'system'`) sees every row: the operator CLI, scheduled jobs and the authentication lookup itself (before
the partner is known) use it. No tenant set means no partner-owned row is visible or writable.
`FORCE ROW LEVEL SECURITY` holds the policy for the table owner too; the hub connects as a role that owns
no table and may not bypass RLS (hub/ops/dbroles.py), on the embedded default as in production.

Migrations call `enable(op.get_bind(), "signals", "contributor_id")`.
"""

from __future__ import annotations

import re
from typing import Final

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

# The tenant value that sees every partner's rows: CLI, jobs, authentication lookups.
SYSTEM: Final = "system"
SETTING: Final = "hashfed.partner"

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def policy_name(table: str) -> str:
    return f"{table}_tenant_isolation"


def enable(conn: Connection, table: str, partner_column: str = "partner_id") -> None:
    """Enable and force RLS on `table`, limiting it to rows of the transaction's tenant."""
    for name in (table, partner_column):
        if not _IDENT.match(name):
            raise ValueError(f"invalid SQL identifier {name!r}")
    tenant = f"current_setting('{SETTING}', true)"
    condition = f"({partner_column}::text = {tenant} OR {tenant} = '{SYSTEM}')"
    conn.execute(text(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"))
    conn.execute(text(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY"))
    conn.execute(text(f"DROP POLICY IF EXISTS {policy_name(table)} ON {table}"))
    conn.execute(
        text(f"CREATE POLICY {policy_name(table)} ON {table} USING {condition} WITH CHECK {condition}")
    )


def disable(conn: Connection, table: str) -> None:
    """Undo `enable` (for a migration's downgrade)."""
    if not _IDENT.match(table):
        raise ValueError(f"invalid SQL identifier {table!r}")
    conn.execute(text(f"DROP POLICY IF EXISTS {policy_name(table)} ON {table}"))
    conn.execute(text(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY"))
    conn.execute(text(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY"))


def set_tenant(session: Session | Connection, partner_id: str | None) -> None:
    """Set the tenant for the rest of the current transaction (`SYSTEM` for all, None for none)."""
    session.execute(
        text("SELECT set_config(:name, :value, true)"), {"name": SETTING, "value": partner_id or ""}
    )


def tables_with_rls(conn: Connection) -> dict[str, bool]:
    """Tables with RLS enabled, mapped to whether it is forced too (for tests and `readyz`)."""
    rows = conn.execute(
        text(
            "SELECT relname, relforcerowsecurity FROM pg_class "
            "WHERE relrowsecurity AND relkind = 'r' AND relnamespace = current_schema()::regnamespace"
        )
    )
    return {name: bool(forced) for name, forced in rows}
