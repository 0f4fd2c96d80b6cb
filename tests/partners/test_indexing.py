"""The kit's matcher index follows the verified mirror in place, is saved, and is repaired when stale."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from audit.payloads import BatchAdd
from partners.client.indexing import CURRENT, LocalIndex, SyncHook, index_dir
from partners.client.mirror import Mirror
from partners.client.sync import Syncer
from partners.client.verify import Policy
from tests.partners.fakehub import FakeHub, FakeTransport


def seal_values(hub: FakeHub, cid: str, adds: list[tuple[str, str, str]], removes: list[str] = ()) -> None:
    """Seal a batch adding (id, type, value) and removing ids (FakeHub.seal only makes PDQs of its own)."""
    hub.seal_values(cid, [BatchAdd(sid, kind, value, audit_seq=1) for sid, kind, value in adds], list(removes))


def pdq(n: int) -> str:
    return f"{n:064x}"


def sync(hub: FakeHub, mirror: Mirror, **kwargs) -> None:
    policy = Policy(max_removal_share=1.0)  # tiny collections: every removal is a large share
    syncer = Syncer(FakeTransport(hub, snapshots=False), mirror, hub.pin, policy, clock=lambda: hub.now,
                    only=("c1",), **kwargs)
    report = syncer.sync()
    assert report.ok, report.errors()


@pytest.fixture
def hub() -> FakeHub:
    h = FakeHub()
    h.add_collection("c1")
    seal_values(h, "c1", [("a", "pdq", pdq(0b1111)), ("b", "md5", "ab" * 16), ("c", "pdq", "f" * 64)])
    return h


@pytest.fixture
def mirror(tmp_path: Path, hub: FakeHub) -> Iterator[Mirror]:
    m = Mirror.open(f"sqlite:///{tmp_path / 'mirror.db'}")
    sync(hub, m)
    yield m
    m.close()


def ids(index: LocalIndex, kind: str, value: str, threshold: int | None = None) -> list[str]:
    return [str(m.signal_id) for m in index.matcher.match(kind, [value], threshold=threshold)[0]]


def test_built_from_the_mirror_with_the_descriptor_threshold(tmp_path: Path, mirror: Mirror) -> None:
    index = LocalIndex.open(mirror, tmp_path / "index")
    assert index.builds == 1 and len(index) == 3
    assert index.thresholds == {"c1": 31}  # from the signed descriptor
    assert ids(index, "pdq", pdq(0)) == ["a"]  # distance 4
    assert ids(index, "md5", "AB" * 16) == ["b"]
    assert (tmp_path / "index" / CURRENT).exists()


def test_a_synced_batch_updates_the_index_in_place_and_it_is_saved(
    tmp_path: Path, hub: FakeHub, mirror: Mirror
) -> None:
    home = tmp_path
    LocalIndex.open(mirror, index_dir(home))  # the partner ran `match` once: a saved index exists
    hook = SyncHook(home, mirror)
    seal_values(hub, "c1", [("d", "sha256", "cd" * 32)], removes=["a"])
    sync(hub, mirror, on_synced=hook)  # first run: the hook loads the saved index and catches up
    index = hook.index
    assert index is not None and index.loads == 1 and index.builds == 0
    matcher = index.matcher
    seal_values(hub, "c1", [("e", "pdq", "0f" * 32)], removes=["b"])
    sync(hub, mirror, on_synced=hook)
    assert index.matcher is matcher and index.builds == 0  # in place: no rebuild
    assert ids(index, "pdq", pdq(0)) == []  # removed
    assert ids(index, "md5", "ab" * 16) == []
    assert ids(index, "sha256", "cd" * 32) == ["d"]
    assert ids(index, "pdq", "0f" * 32) == ["e"]
    assert index.heads["c1"].seq == 3
    # A restart loads the saved files: no build from the mirror, same answers.
    again = LocalIndex.open(mirror, index_dir(home))
    assert (again.builds, again.loads) == (0, 1)
    assert ids(again, "pdq", "0f" * 32) == ["e"] and ids(again, "pdq", pdq(0)) == []
    assert again.heads["c1"].seq == 3


def test_a_sync_without_a_saved_index_builds_nothing(tmp_path: Path, hub: FakeHub, mirror: Mirror) -> None:
    hook = SyncHook(tmp_path, mirror)
    seal_values(hub, "c1", [("d", "md5", "cd" * 16)])
    sync(hub, mirror, on_synced=hook)
    assert hook.index is None and not index_dir(tmp_path).exists()


def test_a_saved_index_behind_the_mirror_is_caught_up_by_replay(
    tmp_path: Path, hub: FakeHub, mirror: Mirror
) -> None:
    LocalIndex.open(mirror, tmp_path / "index")
    seal_values(hub, "c1", [("d", "md5", "cd" * 16)], removes=["c"])
    sync(hub, mirror)  # no hook: the saved index is now at seq 1, the mirror at 2
    index = LocalIndex.open(mirror, tmp_path / "index")
    assert (index.builds, index.loads, index.applied) == (0, 1, 2)
    assert ids(index, "md5", "cd" * 16) == ["d"] and ids(index, "pdq", "f" * 64) == []


@pytest.mark.parametrize("damage", ["corrupt file", "ahead of the mirror", "another mirror"])
def test_a_saved_index_that_does_not_fit_is_rebuilt(
    tmp_path: Path, hub: FakeHub, mirror: Mirror, damage: str
) -> None:
    directory = tmp_path / "index"
    LocalIndex.open(mirror, directory)
    gen = directory / (directory / CURRENT).read_text().strip()
    if damage == "corrupt file":
        (gen / "md5.refs.json").write_text('[["c1", "zz"]]')
        target = mirror
    else:
        # a mirror that is behind (empty) or at the same seq with another payload
        other_hub = FakeHub()
        other_hub.add_collection("c1")
        if damage == "another mirror":
            seal_values(other_hub, "c1", [("x", "md5", "ee" * 16)])
        target = Mirror.open(f"sqlite:///{tmp_path / 'other.db'}")
        if damage == "another mirror":
            sync(other_hub, target)
    index = LocalIndex.open(target, directory)
    assert index.builds == 1  # loaded, found not to fit, rebuilt from the mirror
    assert ids(index, "md5", "ab" * 16) == (["b"] if damage == "corrupt file" else [])
    if damage == "another mirror":
        assert ids(index, "md5", "ee" * 16) == ["x"]
