"""Numba kernels of the PDQ index and the Matcher's signal table; internal to ``partners.matching``.

- ``common``: intrinsics (popcount, PEXT, loads and prefetches by address), a hash's chunk value (natural
  bit order or through a key map), the packed bucket-start format;
- ``build``: a chunk's MIH bucket table, built by a counting sort, packed, and merged with appended rows;
- ``mih``: the multi-index hashing search over every segment of an index, in one call;
- ``scan``: the tiled exhaustive scan;
- ``gather``: the signal table's kernels (hits to signal ids, id lookup, batch sort, sorted insert).

Rules that keep the kernels fast and are easy to break:
- no array arguments to helper functions called in a hot loop (numba then emits reference-count atomics per
  call); helpers take scalars only, arrays are indexed inline or read by address;
- explicit integer casts: ``uint64`` mixed with ``int64`` silently becomes ``float64``;
- every kernel is ``cache=True`` (compiled once per machine) and ``nogil=True`` (threads can share an index).

numba's cache checks only the source file of the kernel it loads: a kernel inlines the helpers of
``common.py``, so after a change there, delete the ``__pycache__`` of this package (or touch the modules) so
the kernels compile again. ``NUMBA_BOUNDSCHECK`` is not part of the cache key either: a run with bounds
checks needs its own ``NUMBA_CACHE_DIR`` (as ``.ci/run`` gives it), or it loads the unchecked kernels.
"""
