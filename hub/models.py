"""Where the metadata is gathered: importing every model module registers its tables on `Base`."""

from __future__ import annotations

import importlib

# Every module that defines tables. Alembic's autogenerate and the schema test rely on this list.
MODEL_MODULES = ("hub.tenants", "hub.auditlog")


def import_all() -> None:
    for name in MODEL_MODULES:
        importlib.import_module(name)
