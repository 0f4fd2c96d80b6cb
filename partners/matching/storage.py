"""Saving and loading a PDQ index: plain ``.npy`` arrays (memory-mappable, never pickled) and a JSON manifest.

Layout of an index directory::

    manifest.json   {"format": "hashfed.pdq-index", "version": 2, "count", "bits", "chunks",
                     "key_order": [256 bit positions] or null,
                     "files": {name: {"dtype", "shape", "sha256"}}}
    hashes.npy      (n, 4) uint64, rows sorted by id
    ids.npy         (n,) int64, strictly increasing
    offs.npy rows.npy occ.npy   the MIH bucket tables, chunk after chunk (see ``kernels.build.build_chunk``); the
                                bucket starts as one uint32 per bucket (in memory they are packed in cache
                                lines, see ``PdqTable``: packed from these at load, expanded at save)

`key_order` is the main table's key map (``pdq_index.KeyMap``: which bits make each chunk's key), null for
natural bit order; version 1 saves have none and load in natural order. A save compacts the index first (merge,
tombstoned rows dropped), so a load needs no rebuild. A load checks
the SHA-256 of every file against the manifest and the tables' structure, because a kernel trusts its arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from partners.matching import memory
from partners.matching.errors import IndexFormatError, MatchingError
from partners.matching.pdq_index import KeyMap, Layout, PdqIndex, PdqTable, _Segment

FORMAT = "hashfed.pdq-index"
VERSION = 2  # 2 added `key_order`; version 1 saves still load
MANIFEST = "manifest.json"
_ARRAYS = {"hashes": "<u8", "ids": "<i8", "offs": "<u4", "rows": "<u4", "occ": "<u8"}


def save_pdq(index: PdqIndex, path: str | os.PathLike[str]) -> None:
    """Write ``index`` (compacted) to the directory ``path``; the manifest is written last, atomically.

    Each array is written piece by piece (the hashes' base and tail, each chunk's bucket table): no copy of
    the whole table is made."""
    seg = index.main_segment()
    live = seg.dead[: seg.rows] == 0
    if not live.all():  # main_segment compacts, so this is only a guard against a concurrent remove
        words, ids = seg.alive()
        table = PdqTable.build(np.ascontiguousarray(words), seg.table.layout, seg.table.keymap)
        seg = _Segment(table, ids, np.zeros(len(ids), dtype=np.uint8), 0, len(ids))
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    table = seg.table
    base = min(seg.rows, len(table.hashes))
    lay = table.layout
    parts: dict[str, tuple[Iterable[npt.NDArray[Any]], tuple[int, ...]]] = {
        "hashes": ([table.hashes[:base], table.tail[: seg.rows - base]], (seg.rows, 4)),
        "ids": ([seg.id_array()], (seg.rows,)),
        # one chunk's uint32 bucket starts at a time (32 MiB at 2^23 buckets), not all of them at once
        "offs": ((table.offsets(c) for c in range(lay.chunks)), (lay.chunks * ((1 << lay.bits) + 1),)),
        "rows": (table.rows, (sum(len(r) for r in table.rows),)),
        "occ": (table.occ, (sum(len(o) for o in table.occ),)),
    }
    files: dict[str, Any] = {}
    for name, (pieces, shape) in parts.items():
        files[f"{name}.npy"] = _write_npy(directory / f"{name}.npy", pieces, _ARRAYS[name], shape)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "count": len(seg),
        "bits": table.layout.bits,
        "chunks": table.layout.chunks,
        "key_order": None if table.keymap is None else [int(b) for b in table.keymap.order],
        "files": files,
    }
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, directory / MANIFEST)


def _write_npy(file: Path, pieces: Iterable[npt.NDArray[Any]], dtype: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """Write the concatenation of ``pieces`` as one ``.npy`` file; its manifest entry (SHA-256 of the data)."""
    digest = hashlib.sha256()
    with open(file, "wb") as f:
        header = {"descr": dtype, "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(f, header)
        for piece in pieces:
            data = np.ascontiguousarray(piece, dtype=dtype)
            _update(digest, data)
            data.tofile(f)
    return {"dtype": dtype, "shape": list(shape), "sha256": digest.hexdigest()}


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
    version = manifest.get("version")
    if version not in (1, VERSION) or isinstance(version, bool):
        raise IndexFormatError(f"index format version {version!r}, this code reads 1 and {VERSION}")
    try:
        count = int(manifest["count"])
        layout = Layout(bits=int(manifest["bits"]), chunks=int(manifest["chunks"]))
        order = manifest["key_order"] if version == VERSION else None
        keymap = None if order is None else KeyMap.from_order(_bit_positions(order), layout)
        files = manifest["files"]
        arrays = {name: _load_array(directory, name, files[f"{name}.npy"]) for name in _ARRAYS}
    except (KeyError, TypeError, ValueError, MatchingError) as e:
        raise IndexFormatError(f"malformed index manifest in {directory}: {e}") from e
    _check_structure(arrays, count, layout)
    nb = 1 << layout.bits
    # one array per chunk (a merge replaces them one at a time); copies unless memory-mapped
    chunks = {
        "offs": arrays["offs"].reshape(layout.chunks, nb + 1),
        "rows": arrays["rows"].reshape(layout.chunks, count),
        "occ": arrays["occ"].reshape(layout.chunks, nb // 64),
    }
    tables = {
        name: [arr[c] if mmap or name == "offs" else memory.copy_of(arr[c], arr.dtype) for c in range(layout.chunks)]
        for name, arr in chunks.items()
    }
    del chunks
    hashes = arrays["hashes"] if mmap else memory.copy_of(arrays["hashes"], np.uint64)
    # bucket starts are packed into memory (a chunk that keeps plain uint32 starts stays mapped with ``mmap``)
    table = PdqTable.from_offsets(hashes, layout, tables["offs"], tables["rows"], tables["occ"], copy=not mmap,  # type: ignore[arg-type]
                                  keymap=keymap)
    ids = arrays["ids"]
    if count and int(ids[0]) == 0 and int(ids[-1]) == count - 1:  # strictly increasing (checked): 0..n-1
        seg = _Segment(table, ids[:0], memory.zeros(count, np.uint8), count, count)  # type: ignore[arg-type]
    else:
        ids = ids if mmap else memory.copy_of(ids, np.int64)
        seg = _Segment(table, ids, memory.zeros(count, np.uint8), 0, count)  # type: ignore[arg-type]
    return PdqIndex.from_state(seg, **kwargs)


def _bit_positions(order: Any) -> list[int]:
    if not isinstance(order, list) or not all(isinstance(b, int) and not isinstance(b, bool) for b in order):
        raise ValueError("key_order is a list of bit positions")
    return order


def _digest(arr: npt.NDArray[Any]) -> str:
    h = hashlib.sha256()
    _update(h, arr)
    return h.hexdigest()


def _update(h: Any, arr: npt.NDArray[Any]) -> None:
    flat = arr.reshape(-1).view(np.uint8) if arr.size else np.zeros(0, dtype=np.uint8)
    step = 1 << 26  # 64 MiB at a time, so a memory map is not pulled in whole
    for i in range(0, flat.shape[0], step):
        h.update(np.ascontiguousarray(flat[i : i + step]).tobytes())


def _load_array(directory: Path, name: str, meta: dict[str, Any]) -> npt.NDArray[Any]:
    file = directory / f"{name}.npy"
    try:
        # mapped read-only either way: without ``mmap`` the caller copies it into huge pages piece by piece,
        # so a load never holds a file's contents twice in anonymous memory
        arr = np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise IndexFormatError(f"cannot read {file}: {e}") from e
    if arr.dtype != np.dtype(meta["dtype"]) or list(arr.shape) != list(meta["shape"]):
        raise IndexFormatError(f"{file}: dtype/shape {arr.dtype}{arr.shape} do not match the manifest")
    if _digest(arr) != meta["sha256"]:
        raise IndexFormatError(f"{file}: SHA-256 does not match the manifest (corrupted or replaced)")
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
    for c in range(layout.chunks):  # ascending, so every start lies in 0..count (one chunk's temporary at a time)
        if not bool(np.all(offs[c, 1:] >= offs[c, :-1])):
            raise IndexFormatError(f"offs.npy: the bucket starts of chunk {c} are not ascending")
    if count and int(arrays["rows"].max()) >= count:
        raise IndexFormatError("rows.npy points past the hashes")
