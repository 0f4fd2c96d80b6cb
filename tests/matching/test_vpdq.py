"""Videos: the vpdq wire form, vPDQ hashing of videos made here with PyAV, and the vPDQ match rule."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from partners.matching import InvalidHashError, InvalidThresholdError, Matcher, hash_file, hash_files
from partners.matching.vpdq import (
    MAX_VPDQ_FRAMES,
    VideoMatch,
    VpdqFrame,
    format_vpdq,
    match_percentages,
    normalize_vpdq,
    parse_vpdq,
    unique_words,
)
from tests.matching.conftest import flip_bits, random_words
from tests.matching.videos import make_video

H1 = "e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c"
H2 = "c0f11178372c6aaccddea259648fbfd62f434c89c9e99b249772be216c8d055c"


# --- the wire form ------------------------------------------------------------------------------------------


def test_python_threatexchange_form_reads_and_normalizes() -> None:
    # vpdq_to_json's output: json.dumps with spaces, timestamps formatted with three significant digits
    te = json.dumps([f"{H1.upper()},100,0.0", f"{H2},98,1.0", f"{H1},45,1.23e+02"])
    frames = parse_vpdq(te)
    assert frames == [VpdqFrame(H1, 100, 0.0), VpdqFrame(H2, 98, 1.0), VpdqFrame(H1, 45, 123.0)]
    canonical = normalize_vpdq(te)
    assert canonical == f'["{H1},100,0.000","{H2},98,1.000","{H1},45,123.000"]'
    assert normalize_vpdq(canonical) == canonical
    # what python-threatexchange's json_to_vpdq reads from the canonical form: the same frames
    read_back = [(h, int(q), float(t)) for h, q, t in (s.split(",") for s in json.loads(canonical))]
    assert read_back == [tuple(f) for f in frames]


def test_vpdq_line_form_reads_as_the_same_frames() -> None:
    lines = f"0,100,{H1},0.000\n30,98,{H2},1.000\n"
    assert normalize_vpdq(lines) == f'["{H1},100,0.000","{H2},98,1.000"]'


@pytest.mark.parametrize(
    "value",
    [
        "[]",
        "",
        "{}",
        "[1, 2]",
        f'["{H1},100"]',
        f'["{H1[:-1]},100,0.0"]',
        f'["{H1[:-1]}g,100,0.0"]',
        f'["{H1},101,0.0"]',
        f'["{H1},-1,0.0"]',
        f'["{H1},100,-1.0"]',
        f'["{H1},100,nan"]',
        f'["{H1},100,inf"]',
        f'["{H1},100,0.0"',
        f"0,100,{H1}",
        json.dumps([f"{H1},100,{i}" for i in range(MAX_VPDQ_FRAMES + 1)]),
    ],
    ids=[
        "no frame", "empty", "object", "numbers", "two fields", "short hash", "non-hex hash", "quality 101",
        "negative quality", "negative time", "nan time", "infinite time", "broken JSON", "line of three fields",
        "too many frames",
    ],
)  # fmt: skip
def test_malformed_values_are_refused(value: str) -> None:
    with pytest.raises(InvalidHashError):
        parse_vpdq(value)


def test_unique_words_drop_low_quality_and_repeated_frames() -> None:
    frames = [VpdqFrame(H1, 100, 0.0), VpdqFrame(H1, 100, 1.0), VpdqFrame(H2, 49, 2.0), VpdqFrame(H2, 50, 3.0)]
    words = unique_words(frames)
    assert words.shape == (2, 4)
    assert unique_words([VpdqFrame(H1, 10, 0.0)]).shape == (0, 4)


# --- the match rule in the matcher --------------------------------------------------------------------------


def as_value(words: np.ndarray) -> str:
    from partners.matching import pdq_words_to_hex

    return format_vpdq(VpdqFrame(h, 100, float(i)) for i, h in enumerate(pdq_words_to_hex(words)))


def near(rng: np.random.Generator, words: np.ndarray, bits: int) -> np.ndarray:
    return np.stack([flip_bits(rng, w, bits) for w in words])


def test_rule_on_both_sides_clip_and_other_video(rng: np.random.Generator) -> None:
    video = random_words(rng, 10)
    m = Matcher(background_merge=False)
    m.add("c", "vpdq", [("v1", as_value(video)), ("v2", as_value(random_words(rng, 10)))])
    reencoded, clip, other = near(rng, video, 12), near(rng, video[:5], 12), random_words(rng, 10)
    found = m.match_vpdq([as_value(reencoded), as_value(clip), as_value(other)])
    assert found[0] == [VideoMatch("c", "v1", 100.0, 100.0, True)]
    assert found[1] == [VideoMatch("c", "v1", 100.0, 50.0, False)]  # the query-side rule only
    assert found[2] == []
    assert m.match("vpdq", [as_value(reencoded), as_value(clip)]) == [[(0, "c", "v1")], []]


def test_percent_and_threshold_per_collection(rng: np.random.Generator) -> None:
    video = random_words(rng, 10)
    m = Matcher(background_merge=False)
    for c in ("strict", "lenient"):
        m.add(c, "vpdq", [("v", as_value(video))])
    m.set_vpdq_percent("lenient", 50)
    m.set_threshold("strict", 8)
    assert (m.vpdq_percent("strict"), m.vpdq_percent("lenient")) == (80, 50)
    query = np.concatenate([near(rng, video[:6], 12), random_words(rng, 2)])  # 6 of 8 query frames, 6 of 10 stored
    found = m.match_vpdq([as_value(query)])[0]
    assert found == [VideoMatch("lenient", "v", 75.0, 60.0, True)]
    assert m.match_vpdq([as_value(query)], threshold=8) == [[]]  # a query may lower the frame threshold
    assert m.match_vpdq([as_value(query)], collections=["strict"]) == [[]]
    with pytest.raises(InvalidThresholdError):
        m.set_vpdq_percent("strict", 0)


def test_matches_agree_with_brute_force_over_families(rng: np.random.Generator) -> None:
    """Families of near-duplicate videos: every (query, stored) pair's shares equal the brute-force ones."""
    m = Matcher(background_merge=False, merge_at=64)
    stored = {}
    for i in range(40):
        base = random_words(rng, int(rng.integers(3, 12)))
        for j in range(3):
            words = near(rng, base, int(rng.integers(0, 40)))[: int(rng.integers(2, len(base) + 1))]
            stored[f"f{i}-{j}"] = words
    m.add("c", "vpdq", [(k, as_value(w)) for k, w in stored.items()])
    m.set_vpdq_percent("c", 30)
    queries = [near(rng, stored[f"f{i}-0"], 10) for i in range(0, 40, 4)]
    for q, found in zip(queries, m.match_vpdq([as_value(q) for q in queries]), strict=True):
        expected = {}
        for k, w in stored.items():
            qp, sp = match_percentages(unique_words(parse_vpdq(as_value(q))), w, 31)
            if qp >= 30 or sp >= 30:
                expected[k] = (qp, sp, qp >= 30 and sp >= 30)
        assert {v.signal_id: (v.query_percent, v.stored_percent, v.both_sides) for v in found} == expected


def test_remove_replace_and_save_load(rng: np.random.Generator, tmp_path: Path) -> None:
    a, b = random_words(rng, 6), random_words(rng, 6)
    m = Matcher(background_merge=False)
    m.add("c", "vpdq", [("v", as_value(a))])
    m.add("c", "video_md5", [("m", "ab" * 16)])
    m.set_vpdq_percent("c", 90)
    m.add("c", "vpdq", [("v", as_value(b))])  # the same id replaced: its old frames leave the index
    assert m.match_vpdq([as_value(a)]) == [[]]
    assert [v.signal_id for v in m.match_vpdq([as_value(b)])[0]] == ["v"]
    assert m.match("video_md5", ["AB" * 16]) == [[(0, "c", "m")]]
    assert m.match("md5", ["ab" * 16]) == [[]]  # a video's MD5 is a type of its own
    m.save(tmp_path / "saved")
    loaded = Matcher.load(tmp_path / "saved")
    assert loaded.vpdq_percent("c") == 90 and len(loaded) == 2
    assert [v.signal_id for v in loaded.match_vpdq([as_value(b)])[0]] == ["v"]
    assert loaded.match("video_md5", ["ab" * 16]) == [[(0, "c", "m")]]
    assert loaded.remove("c", ["v", "m"]) == 2
    assert loaded.match_vpdq([as_value(b)]) == [[]] and len(loaded) == 0


def test_invalid_vpdq_changes_nothing(rng: np.random.Generator) -> None:
    m = Matcher(background_merge=False)
    with pytest.raises(InvalidHashError):
        m.add("c", "vpdq", [("ok", as_value(random_words(rng, 3))), ("bad", "[]")])
    assert len(m) == 0


# --- hashing videos made here -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    original = make_video(d / "original.mp4", [1, 2, 3, 4])
    corrupt = d / "corrupt.mp4"
    data = bytearray(original.read_bytes())
    data[len(data) // 3 :] = bytes(len(data) - len(data) // 3)  # the second two thirds zeroed
    corrupt.write_bytes(bytes(data))
    return {
        "original": original,
        "reencoded": make_video(d / "small.mp4", [1, 2, 3, 4], size=(160, 120), bit_rate=150_000),
        "other": make_video(d / "other.mp4", [5, 6, 7, 8]),
        "clip": make_video(d / "clip.mp4", [1, 2]),
        "corrupt": corrupt,
    }


def test_a_video_hashes_one_frame_per_second(videos: dict[str, Path]) -> None:
    r = hash_file(videos["original"])
    assert r.ok and r.pdq is None and r.quality is None and r.vpdq is not None
    assert r.md5 == hashlib.md5(videos["original"].read_bytes(), usedforsecurity=False).hexdigest()
    frames = parse_vpdq(r.vpdq)
    assert [f.timestamp for f in frames] == [float(s) for s in range(8)]  # 8 s at 10 frames/s: frames 0, 10, ..
    assert min(f.quality for f in frames) >= 50
    assert normalize_vpdq(r.vpdq) == r.vpdq


def test_reencoded_matches_other_does_not_clip_by_query_side_only(videos: dict[str, Path]) -> None:
    m = Matcher(background_merge=False)
    m.add("c", "vpdq", [("orig", hash_file(videos["original"]).vpdq or "")])
    values = [hash_file(videos[k]).vpdq or "" for k in ("reencoded", "other", "clip")]
    reencoded, other, clip = m.match_vpdq(values)
    assert [(v.signal_id, v.both_sides) for v in reencoded] == [("orig", True)]
    assert other == []
    assert [(v.signal_id, v.query_percent, v.both_sides) for v in clip] == [("orig", 100.0, False)]
    assert clip[0].stored_percent < 80


def test_a_corrupt_or_non_video_file_is_a_per_file_error(videos: dict[str, Path], tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    results = list(hash_files([videos["corrupt"], text, videos["clip"]]))
    assert [r.ok for r in results] == [False, False, True]
    assert results[0].vpdq is None and results[0].md5 is not None and "video" in (results[0].error or "")
    assert results[1].error == "not an image Pillow can decode, nor a video FFmpeg can decode"


def test_hashes_equal_the_vpdq_reference_output() -> None:
    """``vpdq-sample.mp4`` (made by ``videos.make_video``: four pictures, 2 s each, 29.97 frames/s) and what
    Meta's vpdq 0.2.5, built against FFmpeg 5.1, printed for it (``vpdq-sample.vpdq.txt``, its line form):
    the same frames (every 29th: int(1 s x 29.97)), timestamps in single precision, qualities and hashes."""
    data = Path(__file__).parent / "data"
    reference = parse_vpdq((data / "vpdq-sample.vpdq.txt").read_text())
    ours = parse_vpdq(hash_file(data / "vpdq-sample.mp4").vpdq or "")
    assert [f.timestamp for f in reference][:3] == [0.0, 0.968, 1.935]
    assert [f.timestamp for f in ours] == [f.timestamp for f in reference]  # the same frames selected
    # identical with the PyAV this was written with; another FFmpeg build may round a frame's colour
    # conversion differently (docs/adr/0010-vpdq-with-pyav.md): a few bits, a point of quality
    for a, b in zip(ours, reference, strict=True):
        assert (int(a.pdq, 16) ^ int(b.pdq, 16)).bit_count() <= 4 and abs(a.quality - b.quality) <= 2
