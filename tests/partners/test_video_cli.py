"""`hashfed-partner hash` and `match` on small videos made here with PyAV (tests/matching/videos.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from partners.cli.main import main
from partners.matching.vpdq import parse_vpdq
from tests.matching.videos import make_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    original = make_video(d / "original.mp4", [1, 2, 3, 4])
    corrupt = d / "corrupt.mp4"
    corrupt.write_bytes(original.read_bytes()[:4000])  # cut short: no index of its frames
    return {
        "original": original,
        "reencoded": make_video(d / "small.mp4", [1, 2, 3, 4], size=(160, 120), bit_rate=150_000),
        "other": make_video(d / "other.mp4", [5, 6, 7, 8]),
        "clip": make_video(d / "clip.mp4", [1, 2]),
        "corrupt": corrupt,
    }


def run(home: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["--home", str(home), *args], catch_exceptions=False)


def test_hash_prints_vpdq_and_video_md5_and_a_corrupt_video_is_a_per_file_error(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    paths = [str(videos["original"]), str(videos["corrupt"]), str(videos["clip"])]
    r = run(tmp_path, "hash", "--json", *paths)
    assert r.exit_code == 1
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["file"] for row in rows] == paths
    md5 = hashlib.md5(videos["original"].read_bytes(), usedforsecurity=False).hexdigest()
    assert rows[0]["video_md5"] == rows[0]["md5"] == md5 and "pdq" not in rows[0] and "error" not in rows[0]
    assert [f.timestamp for f in parse_vpdq(rows[0]["vpdq"])] == [float(s) for s in range(8)]
    assert rows[1]["md5"] and "vpdq" not in rows[1] and "video" in rows[1]["error"]
    assert len(parse_vpdq(rows[2]["vpdq"])) == 4
    table = run(tmp_path, "hash", *paths)
    assert table.exit_code == 1
    assert f"file: {paths[0]}\nvpdq: {rows[0]['vpdq']}\nvideo_md5: {md5}\nmd5: {md5}\n" in table.stdout
    assert "1 of 3 file(s)" in table.stderr


@pytest.fixture
def home(tmp_path: Path, videos: dict[str, Path]) -> Path:
    """A kit home whose mirror holds collection c1: the original video's video MD5, synced from a hub."""
    from partners.matching.hashing import hash_file
    from tests.partners.fakehub import FakeHub
    from tests.partners.test_indexing import seal_values
    from tests.partners.test_match_cli import synced_home

    home = tmp_path / "kit"
    hub = FakeHub()
    hub.add_collection("c1")
    original = hash_file(videos["original"])
    assert original.vpdq and original.md5
    seal_values(hub, "c1", [("sig-video", "video_md5", original.md5), ("sig-image", "md5", "ab" * 16)])
    return synced_home(tmp_path, home, hub)


def test_match_finds_a_video_by_its_video_md5_and_reports_a_corrupt_one(home: Path, videos: dict[str, Path]) -> None:
    args = [str(videos[k]) for k in ("original", "reencoded", "corrupt")]
    r = run(home, "match", "--json", *args)
    assert r.exit_code == 1  # the corrupt file could not be hashed; the others were matched
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    found = {(Path(row["query"]).stem, row.get("type")): row.get("matches") for row in rows}
    assert [m["signal"] for m in found[("original", "video_md5")]] == ["sig-video"]
    assert found[("original", "md5")] == []  # a video's MD5 matches as video_md5 only
    assert found[("original", "vpdq")] == []  # the collection holds no vpdq signal
    assert found[("small", "video_md5")] == []  # other bytes
    assert ("corrupt", None) in found
