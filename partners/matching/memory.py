"""Large arrays for the index: page-aligned (so 64-byte aligned) and backed by transparent huge pages.

The index's loads are random over hundreds of megabytes; with 4 KiB pages nearly every one is also a TLB miss.
Anonymous mappings advised ``MADV_HUGEPAGE`` avoid most of those misses.
A mapping is exactly the array's size: the 2 MiB blocks inside it become huge pages, the partial blocks at
its ends stay 4 KiB pages. (Mapping on a 2 MiB boundary made the end's partial block a whole huge page:
+60 MB at 10M over the 33 arrays of the chunk tables, for a few per cent of the loads.)
"""

from __future__ import annotations

import mmap

import numpy as np
import numpy.typing as npt


def empty(shape: int | tuple[int, ...], dtype: npt.DTypeLike) -> npt.NDArray[np.generic]:
    """An uninitialised array in its own anonymous mapping, advised to use huge pages where the OS allows.

    Pages are only backed by memory once written: the mapping of a large array that is filled only in part
    (a reserve for rows to come) costs address space, not memory."""
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    count = int(np.prod(dims, dtype=np.int64))
    nbytes = count * np.dtype(dtype).itemsize
    if nbytes < (1 << 20):  # small arrays: from numpy's allocator, moved to a 64-byte boundary (a cache line)
        raw = np.empty(nbytes + 64, dtype=np.uint8)
        skip = -raw.ctypes.data % 64
        return raw[skip : skip + nbytes].view(dtype).reshape(dims)
    mm = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        mm.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(mm, dtype=dtype, count=count).reshape(dims)


def zeros(shape: int | tuple[int, ...], dtype: npt.DTypeLike) -> npt.NDArray[np.generic]:
    """Like :func:`empty`, zero-filled (an anonymous mapping is: untouched pages still cost nothing)."""
    out = empty(shape, dtype)
    if out.nbytes < (1 << 20):
        out[...] = 0
    return out


def copy_of(array: npt.ArrayLike, dtype: npt.DTypeLike) -> npt.NDArray[np.generic]:
    """A C-contiguous, huge-page-backed copy of ``array``."""
    src = np.asarray(array)
    out = empty(src.shape, dtype)
    out[...] = src
    return out
