"""Fixtures the hub tests share: the real hub harness and the partner mirrors a test opens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from partners.client.mirror import Mirror
from tests.conftest import Database
from tests.partners.realhub import RealHub


@pytest.fixture
def hub(fresh_database: Database, tmp_path: Path) -> RealHub:
    """The real hub (tests/partners/realhub.py) on a database of the test's own. A test module may define its
    own `hub` (tests/hub/test_backup.py does)."""
    return RealHub.start(fresh_database.app_url, fresh_database.engine, tmp_path / "var")


@pytest.fixture
def mirrors() -> Iterator[list[Mirror]]:
    """Mirrors the test opens (tests/hub/keykit.py new_mirror), closed at its end."""
    opened: list[Mirror] = []
    yield opened
    for m in opened:
        m.close()
