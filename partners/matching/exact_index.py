"""Exact-match index for MD5 and SHA-256: a dict from the raw digest to the ids that carry it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from partners.matching.errors import DuplicateIdError, IndexFormatError
from partners.matching.signals import EXACT_HEX_LEN, SignalType, normalize_hex

FORMAT = "hashfed.exact-index"
VERSION = 1


class ExactIndex:
    """Digests of one exact signal type (MD5, SHA-256 or video MD5) with int64 ids; matches have distance 0."""

    def __init__(self, signal_type: SignalType) -> None:
        if signal_type not in EXACT_HEX_LEN:
            raise ValueError(f"{signal_type} is not an exact-match signal type")
        self.signal_type = signal_type
        self._hex_len = EXACT_HEX_LEN[signal_type]
        self._by_digest: dict[bytes, set[int]] = {}
        self._by_id: dict[int, bytes] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def parse(self, value: str) -> bytes:
        """The raw digest of a hex value, or :class:`InvalidHashError`."""
        return bytes.fromhex(normalize_hex(value, self._hex_len, f"a {self.signal_type} digest"))

    def add(self, values: Sequence[str], ids: Sequence[int]) -> None:
        """Add digests; an id already present is replaced."""
        digests = [self.parse(v) for v in values]
        keys = [int(i) for i in ids]
        if len(digests) != len(keys):
            raise ValueError(f"{len(digests)} values but {len(keys)} ids")
        if len(set(keys)) != len(keys):
            raise DuplicateIdError("an id appears twice in one batch of adds")
        self.remove(keys)
        for digest, key in zip(digests, keys, strict=True):
            self._by_digest.setdefault(digest, set()).add(key)
            self._by_id[key] = digest

    def remove(self, ids: Iterable[int]) -> int:
        """Remove ids; returns how many were present."""
        removed = 0
        for key in ids:
            digest = self._by_id.pop(int(key), None)
            if digest is None:
                continue
            removed += 1
            holders = self._by_digest[digest]
            holders.discard(int(key))
            if not holders:
                del self._by_digest[digest]
        return removed

    def search(self, values: Sequence[str]) -> list[list[int]]:
        """For each value, the sorted ids stored with exactly that digest."""
        return [sorted(self._by_digest.get(self.parse(v), ())) for v in values]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``digests.npy`` ((n, len) uint8), ``ids.npy`` and a manifest to the directory ``path``."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        ids = np.array(sorted(self._by_id), dtype=np.int64)
        width = self._hex_len // 2
        digests = np.frombuffer(b"".join(self._by_id[int(i)] for i in ids), dtype=np.uint8).reshape(-1, width)
        np.save(directory / "ids.npy", ids, allow_pickle=False)
        np.save(directory / "digests.npy", digests, allow_pickle=False)
        manifest = {"format": FORMAT, "version": VERSION, "signal_type": str(self.signal_type)}
        manifest["count"] = len(ids)
        (directory / "manifest.json").write_text(json.dumps(manifest) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ExactIndex:
        """Read an index written by :meth:`save`, or :class:`IndexFormatError`."""
        directory = Path(path)
        try:
            manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
            if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
                raise IndexFormatError(f"{directory} does not hold a {FORMAT} version {VERSION}")
            index = cls(SignalType(manifest["signal_type"]))
            ids = np.load(directory / "ids.npy", allow_pickle=False)
            digests = np.load(directory / "digests.npy", allow_pickle=False)
        except IndexFormatError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise IndexFormatError(f"cannot read the exact index in {directory}: {e}") from e
        width = index._hex_len // 2
        if ids.dtype != np.int64 or digests.dtype != np.uint8 or digests.shape != (len(ids), width):
            raise IndexFormatError(f"{directory}: arrays do not match a {index.signal_type} index")
        if len(ids) != manifest["count"] or len(np.unique(ids)) != len(ids):
            raise IndexFormatError(f"{directory}: ids do not match the manifest")
        for key, row in zip(ids.tolist(), digests, strict=True):
            digest = row.tobytes()
            index._by_digest.setdefault(digest, set()).add(key)
            index._by_id[key] = digest
        return index
