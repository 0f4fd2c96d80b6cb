"""Saving and loading a PDQ index: plain ``.npy`` arrays (memory-mappable, never pickled) and a JSON manifest.

Layout of an index directory::

    manifest.json   {"format": "hashfed.pdq-index", "version": 1, "count", "bits", "chunks",
                     "files": {name: {"dtype", "shape", "sha256"}}}
    hashes.npy      (n, 4) uint64, rows sorted by id
    ids.npy         (n,) int64, strictly increasing
    offs.npy rows.npy occ.npy   the MIH bucket tables (see ``_kernels.build_tables``)

A save compacts the index first (merge, tombstoned rows dropped), so a load needs no rebuild. A load checks
the SHA-256 of every file against the manifest and the tables' structure, because a kernel trusts its arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from partners.matching import memory
from partners.matching.errors import IndexFormatError
from partners.matching.pdq_index import Layout, PdqIndex, PdqTable, _Segment

FORMAT = "hashfed.pdq-index"
VERSION = 1
MANIFEST = "manifest.json"
_ARRAYS = {"hashes": "<u8", "ids": "<i8", "offs": "<u4", "rows": "<u4", "occ": "<u8"}


def save_pdq(index: PdqIndex, path: str | os.PathLike[str]) -> None:
    """Write ``index`` (compacted) to the directory ``path``; the manifest is written last, atomically."""
    seg = index.main_segment()
    live = seg.dead == 0
    if not live.all():  # main_segment merges, so this is only a guard against a concurrent remove
        table = PdqTable.build(np.ascontiguousarray(seg.table.hashes[live]))
        seg = _Segment(table, seg.id_array()[live], seg.dead[live])
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    table = seg.table
    arrays: dict[str, npt.NDArray[Any]] = {"hashes": table.hashes, "ids": seg.id_array()}
    arrays.update(offs=table.offs, rows=table.rows, occ=table.occ)
    files: dict[str, Any] = {}
    for name, arr in arrays.items():
        data = np.ascontiguousarray(arr, dtype=_ARRAYS[name])
        np.save(directory / f"{name}.npy", data, allow_pickle=False)
        files[f"{name}.npy"] = {"dtype": _ARRAYS[name], "shape": list(data.shape), "sha256": _digest(data)}
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "count": len(seg),
        "bits": table.layout.bits,
        "chunks": table.layout.chunks,
        "files": files,
    }
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, directory / MANIFEST)


def load_pdq(path: str | os.PathLike[str], *, mmap: bool = True, **kwargs: int | bool) -> PdqIndex:
    """Read an index saved by :func:`save_pdq`; :class:`IndexFormatError` if anything does not check out.

    With ``mmap`` the arrays stay on disk and pages load on demand (fast start, shared page cache); without it
    they are copied into huge-page memory (faster queries).
    """
    directory = Path(path)
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise IndexFormatError(f"cannot read the index manifest in {directory}: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexFormatError(f"{directory} does not hold a {FORMAT}")
    if manifest.get("version") != VERSION:
        raise IndexFormatError(f"index format version {manifest.get('version')!r}, this code reads {VERSION}")
    try:
        count = int(manifest["count"])
        layout = Layout(bits=int(manifest["bits"]), chunks=int(manifest["chunks"]))
        files = manifest["files"]
        arrays = {name: _load_array(directory, name, files[f"{name}.npy"], mmap) for name in _ARRAYS}
    except (KeyError, TypeError, ValueError) as e:
        raise IndexFormatError(f"malformed index manifest in {directory}: {e}") from e
    _check_structure(arrays, count, layout)
    table = PdqTable(arrays["hashes"], layout, arrays["offs"], arrays["rows"], arrays["occ"])
    ids = arrays["ids"]
    if count and int(ids[0]) == 0 and int(ids[-1]) == count - 1:  # strictly increasing (checked): 0..n-1
        ids = ids[:0]  # the row numbers: no id array in memory
    seg = _Segment(table, ids, np.zeros(count, dtype=np.uint8))
    return PdqIndex.from_state(seg, **kwargs)


def _digest(arr: npt.NDArray[Any]) -> str:
    h = hashlib.sha256()
    flat = arr.reshape(-1).view(np.uint8) if arr.size else np.zeros(0, dtype=np.uint8)
    step = 1 << 26  # 64 MiB at a time, so a memory map is not pulled in whole
    for i in range(0, flat.shape[0], step):
        h.update(np.ascontiguousarray(flat[i : i + step]).tobytes())
    return h.hexdigest()


def _load_array(directory: Path, name: str, meta: dict[str, Any], mmap: bool) -> npt.NDArray[Any]:
    file = directory / f"{name}.npy"
    try:
        # copy-on-write ("c"), not read-only: pages are still shared with the page cache, and the kernels take
        # the segments' arrays as tuples of one (writable) array type; nothing writes to them
        arr = np.load(file, mmap_mode="c" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise IndexFormatError(f"cannot read {file}: {e}") from e
    if arr.dtype != np.dtype(meta["dtype"]) or list(arr.shape) != list(meta["shape"]):
        raise IndexFormatError(f"{file}: dtype/shape {arr.dtype}{arr.shape} do not match the manifest")
    if _digest(arr) != meta["sha256"]:
        raise IndexFormatError(f"{file}: SHA-256 does not match the manifest (corrupted or replaced)")
    if not mmap:
        arr = memory.copy_of(arr, arr.dtype)
    return arr


def _check_structure(arrays: dict[str, npt.NDArray[Any]], count: int, layout: Layout) -> None:
    """Bounds the kernels rely on: arrays that pass cannot make a kernel read out of range."""
    nb = 1 << layout.bits
    if not (8 <= layout.bits <= 24 and 1 <= layout.chunks and layout.bits * layout.chunks <= 256):
        raise IndexFormatError(f"impossible layout {layout}")
    expected = {
        "hashes": (count, 4),
        "ids": (count,),
        "offs": (layout.chunks * (nb + 1),),
        "rows": (layout.chunks * count,),
        "occ": (layout.chunks * nb // 64,),
    }
    for name, shape in expected.items():
        if tuple(arrays[name].shape) != shape:
            raise IndexFormatError(f"{name}.npy has shape {arrays[name].shape}, expected {shape}")
    ids = arrays["ids"]
    if count > 1 and not bool(np.all(ids[1:] > ids[:-1])):
        raise IndexFormatError("ids.npy is not strictly increasing")
    offs = arrays["offs"].reshape(layout.chunks, nb + 1)
    if count and (int(offs[:, 0].max()) != 0 or not bool(np.all(offs[:, -1] == count))):
        raise IndexFormatError("offs.npy does not span the rows")
    if count and int(arrays["rows"].max()) >= count:
        raise IndexFormatError("rows.npy points past the hashes")
