"""Where the metadata is gathered: importing every hub module registers its tables on `Base`."""

from __future__ import annotations

import importlib
import pkgutil

import hub

# Modules that only run things (servers, CLI) and define no tables.
_SKIP = {"hub.cli", "hub.serving"}


def import_all() -> None:
    """Import every hub module so Alembic and the schema tests see every table."""
    for module in pkgutil.walk_packages(hub.__path__, "hub."):
        if module.name not in _SKIP and not module.name.endswith(("_cli", ".cli")):
            importlib.import_module(module.name)
