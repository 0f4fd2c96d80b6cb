"""Fixtures shared by the partner kit's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from partners.client.mirror import Mirror


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    """An empty mirror in the test's folder, closed afterwards."""
    m = Mirror.open(f"sqlite:///{tmp_path / 'mirror.db'}")
    yield m
    m.close()
