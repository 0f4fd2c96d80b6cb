"""CI runs this suite a second time with ``NUMBA_BOUNDSCHECK=1`` (see ``.ci/run``), so that an index out of
range in a kernel raises instead of reading or writing past an array."""

from __future__ import annotations

import numpy as np
import pytest
from numba.core import config

from partners.matching.kernels import build


@pytest.mark.skipif(not config.BOUNDSCHECK, reason="only with NUMBA_BOUNDSCHECK=1: unchecked, it writes out of range")
def test_bounds_checks_are_compiled_in() -> None:
    """numba's cache ignores NUMBA_BOUNDSCHECK: a run that loaded kernels compiled without the checks (a
    shared NUMBA_CACHE_DIR) would pass without checking anything, so it must fail here instead."""
    hashes = np.zeros((8, 4), dtype=np.uint64)
    with pytest.raises(IndexError):
        build.chunk_keys(hashes, 0, 8, np.empty(4, dtype=np.int64))
