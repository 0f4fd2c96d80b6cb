"""The kit's reference-matcher index, kept in step with the verified mirror.

- Built once from the mirror's active signals, then updated in place (``Matcher.add`` / ``Matcher.remove``)
  from ``Mirror.changes(collection, after_seq)``: the adds and removes of each applied batch. A sync never
  rebuilds it.
- Saved under ``HOME/index/`` after every change, so a restart loads it instead of reading every signal of
  the mirror. A save writes a new generation directory and then switches ``CURRENT`` atomically, so a
  ``match`` run never reads a half-written index while ``sync --every`` saves.
- On load it is compared with the mirror, collection by collection: a saved seq behind the mirror is
  caught up by replaying the changes since; a saved seq ahead of the mirror, a collection the mirror no
  longer holds, another payload digest at the same seq (the mirror was replaced) or a file whose SHA-256
  does not match its manifest means a rebuild from the mirror.
- PDQ thresholds and the vPDQ percentage P come only from each collection's signed descriptor kept by the
  mirror (a descriptor signed before P existed reads as 80).
- ``vpdq`` signals (a video's frames as canonical text, not a fixed-width value) go to the matcher's frame
  index; saved as JSON beside the fixed-width types' arrays.

The matcher (numpy, numba) is imported only when an index is used, so ``hashfed-partner sync`` works
without the ``[match]`` extra.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from partners.client.errors import PartnerError
from partners.client.mirror import Mirror

if TYPE_CHECKING:
    from partners.client.sync import SyncReport
    from partners.matching.matcher import Matcher

log = logging.getLogger("hashfed.partner.index")

INDEX_DIR = "index"
CURRENT = "CURRENT"
FORMAT = "hashfed.kit-index"
VERSION = 2  # 2 added vpdq.json; a version 1 save is rebuilt from the mirror
VPDQ = "vpdq"  # values of variable length: frames text (partners/matching/vpdq.py)
VPDQ_FILE = "vpdq.json"
# The matcher refuses PDQ thresholds above 64 (beyond it matches are noise); a descriptor may say up to 256.
MAX_THRESHOLD = 64


class SavedIndexError(PartnerError):
    """The saved index cannot be used (missing, corrupted, another format): it is rebuilt from the mirror."""

    check = "index"


@dataclass(frozen=True)
class Head:
    """Where the index stands for one collection: the mirror's seq and the SHA-256 of that seq's payload."""

    seq: int
    prev: str | None


def value_bytes() -> dict[str, int]:
    """Bytes of a value of each type the matcher indexes, from its `SignalType` (the hub's table too)."""
    # Imported here, as the matcher is: `hashfed-partner sync` runs without the [match] extra.
    from partners.matching.signals import HEX_LEN

    return {t.value: n // 2 for t, n in HEX_LEN.items()}


def new_matcher() -> Matcher:
    from partners.matching.matcher import Matcher  # [match] only: as HEX_LEN above

    # Merges run inline: the kit builds and updates in one process and saves right after.
    return Matcher(background_merge=False)


class LocalIndex:
    """A :class:`Matcher` over the mirror's active signals, with the mirror seq it reflects per collection."""

    def __init__(self, mirror: Mirror, directory: Path | None = None) -> None:
        self.mirror = mirror
        self.directory = directory
        self.matcher: Matcher = new_matcher()
        self.types = value_bytes()  # signal type -> bytes of a value
        self.indexed = [*self.types, VPDQ]  # every type the index holds
        self.heads: dict[str, Head] = {}
        self.thresholds: dict[str, int] = {}
        self.builds = 0  # full builds from the mirror's active signals
        self.loads = 0  # loads from the saved files
        self.applied = 0  # changes applied in place (adds + removes)
        self.dirty = False

    # Opening ---------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, mirror: Mirror, directory: Path | None) -> LocalIndex:
        """The saved index caught up with the mirror, or one built from the mirror; saved if it changed."""
        index = cls(mirror, directory)
        loaded = False
        if directory is not None and (directory / CURRENT).exists():
            try:
                index.load()
                loaded = True
            except SavedIndexError as e:
                log.warning("saved index unusable, rebuilding", extra={"event": "index-rebuild", "error": str(e)})
        if not loaded:
            index.build()
        else:
            index.refresh()
        index.save_if_dirty()
        return index

    def _mirror_heads(self) -> dict[str, Head]:
        heads = {}
        for c in self.mirror.collection_ids():
            state, _ = self.mirror.state(c)
            heads[c] = Head(state.size, state.prev)
        return heads

    def _load_thresholds(self, collections: Iterable[str]) -> None:
        for c in collections:
            descriptor = self.mirror.descriptor(c)
            if descriptor is None:
                continue
            threshold = min(descriptor.pdq_threshold, MAX_THRESHOLD)
            self.thresholds[c] = threshold
            self.matcher.set_threshold(c, threshold)
            self.matcher.set_vpdq_percent(c, descriptor.vpdq_match_percent)

    # Building and catching up ----------------------------------------------------------------------------

    def build(self) -> None:
        """Build a new matcher from every active signal of the mirror."""
        heads = self._mirror_heads()  # read first: the signals read next are at these seqs or newer
        matcher = new_matcher()
        groups: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for s in self.mirror.active_signals(types=self.indexed):
            groups[(s.collection, s.type)].append((s.signal_id, s.value))
        for (c, kind), pairs in groups.items():
            matcher.add(c, kind, pairs)
        self.matcher = matcher
        self.heads = heads
        self.thresholds = {}
        self._load_thresholds(heads)
        self.builds += 1
        self.dirty = True
        log.info("index built", extra={"event": "index-build", "signals": len(matcher)})

    def refresh(self) -> int:
        """Catch up with the mirror in place; rebuild only if the two disagree. Returns changes applied."""
        mirror = self._mirror_heads()
        stale = [
            c
            for c, head in self.heads.items()
            if c not in mirror
            or head.seq > mirror[c].seq
            or (head.seq == mirror[c].seq and head.prev != mirror[c].prev)
        ]
        if stale:
            log.warning(
                "index does not match the mirror, rebuilding",
                extra={"event": "index-mismatch", "collections": stale},
            )
            self.build()
            return 0
        applied = 0
        for c, head in mirror.items():
            known = self.heads.get(c, Head(0, None))
            if head.seq > known.seq:
                applied += self.apply_changes(c, known.seq, head.seq)
                self.heads[c] = head
                self.dirty = True
        self._load_thresholds(mirror)
        return applied

    def apply_changes(self, collection: str, after_seq: int, upto_seq: int) -> int:
        """Apply the mirror's adds and removes of `collection` in (after_seq, upto_seq], batch by batch."""
        count = 0
        seq: int | None = None
        adds: dict[str, list[tuple[str, str]]] = defaultdict(list)
        removes: list[str] = []

        def flush() -> None:
            for kind, pairs in adds.items():
                self.matcher.add(collection, kind, pairs)
            if removes:
                self.matcher.remove(collection, removes)
            adds.clear()
            removes.clear()

        for ch in self.mirror.changes(collection, after_seq, upto_seq):
            if ch.seq != seq:
                flush()  # one batch at a time: its adds, then its removes, as the mirror applied them
                seq = ch.seq
            if ch.op == "add" and ch.type in self.indexed:
                adds[ch.type].append((ch.signal_id, ch.value))
                count += 1
            elif ch.op == "remove":
                removes.append(ch.signal_id)
                count += 1
        flush()
        self.applied += count
        return count

    # Matching --------------------------------------------------------------------------------------------

    def collections(self) -> list[str]:
        return sorted(self.heads)

    def __len__(self) -> int:
        return len(self.matcher)

    # Saving and loading ----------------------------------------------------------------------------------

    def save_if_dirty(self) -> bool:
        """Save when something changed since the last save or load; True if saved."""
        if not self.dirty or self.directory is None:
            return False
        self.save()
        return True

    def save(self) -> None:
        """Write the indexed signals and heads as a new generation, then point CURRENT at it atomically."""
        import numpy as np

        if self.directory is None:
            raise SavedIndexError("this index has no directory to save to")
        root = self.directory
        root.mkdir(parents=True, exist_ok=True)
        gen = root / f"gen-{time.time_ns()}"
        gen.mkdir()
        # The mirror is read now, at the heads kept (or newer: a concurrent sync only adds what a replay
        # from these heads would add again, and Matcher.add is an upsert).
        heads = dict(self.heads)
        values: dict[str, list[str]] = {t: [] for t in self.indexed}
        refs: dict[str, list[list[str]]] = {t: [] for t in self.indexed}
        for s in self.mirror.active_signals(types=self.indexed):
            if s.collection in heads:
                values[s.type].append(s.value)
                refs[s.type].append([s.collection, s.signal_id])
        videos = [[c, sid, v] for (c, sid), v in zip(refs.pop(VPDQ), values.pop(VPDQ), strict=True)]
        (gen / VPDQ_FILE).write_text(json.dumps(videos), encoding="utf-8")
        files: dict[str, str] = {}
        for kind in self.types:
            raw = bytes.fromhex("".join(values[kind]))
            arr = np.frombuffer(raw, dtype=np.uint8).reshape(-1, self.types[kind])
            np.save(gen / f"{kind}.npy", arr, allow_pickle=False)
            (gen / f"{kind}.refs.json").write_text(json.dumps(refs[kind]), encoding="utf-8")
        for path in sorted(gen.iterdir()):
            files[path.name] = _file_sha256(path)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "heads": {c: {"seq": h.seq, "prev": h.prev} for c, h in sorted(heads.items())},
            "count": sum(len(v) for v in values.values()) + len(videos),
            "files": files,
        }
        (gen / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        tmp = root / (CURRENT + ".tmp")
        tmp.write_text(gen.name + "\n", encoding="utf-8")
        os.replace(tmp, root / CURRENT)
        for old in root.glob("gen-*"):
            if old.name != gen.name:
                shutil.rmtree(old, ignore_errors=True)
        self.dirty = False
        log.info("index saved", extra={"event": "index-save", "signals": manifest["count"], "dir": str(gen)})

    def load(self) -> None:
        """Load the saved generation (checking every file's SHA-256) into a new matcher; no mirror read."""
        import numpy as np

        if self.directory is None:
            raise SavedIndexError("this index has no directory to load from")
        try:
            gen = self.directory / (self.directory / CURRENT).read_text(encoding="utf-8").strip()
            manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise SavedIndexError(f"cannot read the saved index: {e}") from e
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise SavedIndexError("the saved index is of another format or version")
        matcher = new_matcher()
        try:
            for name, digest in manifest["files"].items():
                if _file_sha256(gen / name) != digest:
                    raise SavedIndexError(f"{name}: SHA-256 does not match the manifest")
            for kind in self.types:
                arr = np.load(gen / f"{kind}.npy", allow_pickle=False)
                refs = json.loads((gen / f"{kind}.refs.json").read_text(encoding="utf-8"))
                if arr.ndim != 2 or arr.shape != (len(refs), self.types[kind]) or arr.dtype != np.uint8:
                    raise SavedIndexError(f"{kind}.npy does not match its refs")
                raw = arr.tobytes()
                width = self.types[kind]
                groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
                for i, (c, sid) in enumerate(refs):
                    groups[c].append((sid, raw[i * width : (i + 1) * width].hex()))
                for c, pairs in groups.items():
                    matcher.add(c, kind, pairs)
            videos: dict[str, list[tuple[str, str]]] = defaultdict(list)
            for c, sid, value in json.loads((gen / VPDQ_FILE).read_text(encoding="utf-8")):
                videos[str(c)].append((str(sid), str(value)))
            for c, pairs in videos.items():
                matcher.add(c, VPDQ, pairs)
            heads = {c: Head(int(h["seq"]), h["prev"]) for c, h in manifest["heads"].items()}
        except SavedIndexError:
            raise
        except (OSError, KeyError, TypeError, ValueError) as e:
            raise SavedIndexError(f"the saved index is malformed: {e}") from e
        self.matcher = matcher
        self.heads = heads
        self.thresholds = {}
        self._load_thresholds(c for c in heads if c in set(self.mirror.collection_ids()))
        self.loads += 1
        self.dirty = False


def _file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def index_dir(home: Path) -> Path:
    """Where the kit keeps its saved index."""
    return home / INDEX_DIR


class SyncHook:
    """Keeps a saved index current after each sync: loaded once, updated in place, saved.

    A partner that never ran `hashfed-partner match` has no saved index, and then a sync does nothing
    here (no index is built for a partner that matches elsewhere).
    """

    def __init__(self, home: Path, mirror: Mirror) -> None:
        self.directory = index_dir(home)
        self.mirror = mirror
        self.index: LocalIndex | None = None

    def __call__(self, report: SyncReport) -> None:
        if self.index is None:
            if not (self.directory / CURRENT).exists():
                return
            self.index = LocalIndex.open(self.mirror, self.directory)
            return
        self.index.refresh()
        self.index.save_if_dirty()


def sync_hook(home: Path, mirror: Mirror) -> Callable[[SyncReport], None] | None:
    """The `on_synced` hook of the CLI's syncer, or None when the `[match]` extra is not installed."""
    try:
        import numpy  # noqa: F401 - only probing for the extra
    except ImportError:
        return None
    return SyncHook(home, mirror)


def describe(index: LocalIndex) -> dict[str, Any]:
    """What `match --json` and logs say about the index used."""
    return {
        "signals": len(index),
        "heads": {c: h.seq for c, h in sorted(index.heads.items())},
        "builds": index.builds,
        "loads": index.loads,
    }
