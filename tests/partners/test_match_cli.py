"""`hashfed-partner hash` and `match` on real pictures made with Pillow here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from partners.cli.main import main
from partners.client import config as cfg
from partners.client.mirror import Mirror
from partners.matching.hashing import hash_file
from tests.partners.fakehub import FakeHub
from tests.partners.test_indexing import seal_values, sync


def picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, 320)
    base = np.stack([np.add.outer(x[:240] * (seed % 3 + 1) % 256, x) / 2] * 3, axis=-1)
    noise = rng.integers(0, 8, size=(240, 320, 3))  # fine noise does not survive a resize
    img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, 260)), int(rng.integers(0, 180))
        draw.ellipse((x0, y0, x0 + 60, y0 + 60), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "media"
    d.mkdir()
    out = {"original": d / "original.png", "small": d / "small.jpg", "jpeg": d / "q60.jpg",
           "other": d / "other.png", "text": d / "notes.txt"}
    img = picture(7)
    img.save(out["original"])
    img.resize((160, 120)).save(out["small"], quality=85)
    img.save(out["jpeg"], quality=60)
    picture(12345).save(out["other"])
    out["text"].write_text("not a picture\n")
    return out


@pytest.fixture
def home(tmp_path: Path, files: dict[str, Path]) -> Path:
    """A kit home whose mirror holds collection c1: the original's PDQ and MD5, synced from a hub."""
    home = tmp_path / "kit"
    hub = FakeHub()
    hub.add_collection("c1")
    original = hash_file(files["original"])
    text = hash_file(files["text"])
    assert original.pdq and original.md5 and text.sha256
    seal_values(hub, "c1", [("sig-pdq", "pdq", original.pdq), ("sig-md5", "md5", original.md5),
                            ("sig-txt", "sha256", text.sha256)])
    return synced_home(tmp_path, home, hub)


def synced_home(tmp_path: Path, home: Path, hub: FakeHub) -> Path:
    """A kit home configured for `hub` (a client secret file beside it), its mirror synced once."""
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    secret.chmod(0o600)
    config = cfg.PartnerConfig(
        hub_url="https://hub.test", client_id="kit", keyset_sha256=hub.pin, secret_path=str(secret)
    )
    cfg.save(home, config)
    mirror = Mirror.open(config.mirror(home))
    sync(hub, mirror)
    mirror.close()
    return home


def run(home: Path, *args: str):
    return CliRunner().invoke(main, ["--home", str(home), *args], catch_exceptions=False)


def test_hash_prints_every_file_and_reports_a_text_file_without_stopping(files: dict[str, Path], tmp_path: Path):
    paths = [str(files[k]) for k in ("original", "text", "other")] + [str(tmp_path / "missing.png")]
    r = run(tmp_path, "hash", "--json", *paths)
    assert r.exit_code == 1
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["file"] for row in rows] == paths
    assert len(rows[0]["pdq"]) == 64 and rows[0]["quality"] >= 50 and "error" not in rows[0]
    assert rows[1]["pdq"] is None and rows[1]["md5"] and "not an image" in rows[1]["error"]
    assert rows[2]["pdq"] and rows[2]["pdq"] != rows[0]["pdq"]
    assert "cannot read" in rows[3]["error"]
    table = run(tmp_path, "hash", *paths)
    assert table.exit_code == 1
    assert f"file: {files['text']}\npdq: -\nquality: -\n" in table.stdout and "not an image" in table.stderr
    assert f"pdq: {rows[0]['pdq']}\nquality: {rows[0]['quality']}\nmd5: {rows[0]['md5']}\n" in table.stdout
    assert "2 of 4 file(s)" in table.stderr


def test_match_finds_resized_and_reencoded_copies_not_another_picture(home: Path, files: dict[str, Path]):
    r = run(home, "match", "--json", *(str(files[k]) for k in ("original", "small", "jpeg", "other")))
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    pdq = {Path(row["query"]).stem: row["matches"] for row in rows if row["type"] == "pdq"}
    assert [m["signal"] for m in pdq["original"]] == ["sig-pdq"] and pdq["original"][0]["distance"] == 0
    assert [m["signal"] for m in pdq["small"]] == ["sig-pdq"] and pdq["small"][0]["distance"] <= 20
    assert [m["signal"] for m in pdq["q60"]] == ["sig-pdq"] and pdq["q60"][0]["distance"] <= 20
    assert pdq["other"] == []
    md5 = {Path(row["query"]).stem: row["matches"] for row in rows if row["type"] == "md5"}
    assert [m["signal"] for m in md5["original"]] == ["sig-md5"] and md5["small"] == []


def test_match_takes_hashes_and_a_text_file_errors_but_the_run_continues(home: Path, files: dict[str, Path]):
    original = hash_file(files["original"])
    assert original.pdq and original.md5
    r = run(home, "match", str(files["text"]), original.md5, original.pdq.upper())
    assert r.exit_code == 1  # the text file has no PDQ
    assert "not an image" in r.stderr
    lines = r.stdout.splitlines()
    assert any("sig-txt" in line and "sha256" in line for line in lines)  # its SHA-256 still matched
    assert any("sig-md5" in line for line in lines) and any("sig-pdq" in line for line in lines)
    # 64 hex digits are a PDQ unless --type says SHA-256.
    text_sha = hash_file(files["text"]).sha256
    assert text_sha
    assert "sig-txt" not in run(home, "match", text_sha).stdout
    assert "sig-txt" in run(home, "match", "--type", "sha256", text_sha).stdout


def test_threshold_may_only_be_lowered(home: Path, files: dict[str, Path]):
    small = str(files["small"])
    r = run(home, "match", "--json", "--threshold", "0", small)
    assert r.exit_code == 0
    assert all(row["matches"] == [] for row in map(json.loads, r.stdout.splitlines()))
    r = run(home, "match", "--threshold", "40", small)
    assert r.exit_code == 2
    assert "threshold 31" in r.output and "may only lower" in r.output


def test_match_builds_once_then_loads_the_saved_index(home: Path, files: dict[str, Path]):
    assert run(home, "match", str(files["original"])).exit_code == 0
    saved = (home / "index" / "CURRENT").read_text()
    assert run(home, "match", str(files["original"])).exit_code == 0
    assert (home / "index" / "CURRENT").read_text() == saved  # loaded and unchanged: not saved again


def test_match_report_queues_one_pending_review_report_per_matched_signal(home: Path, files: dict[str, Path]):
    """The hub (https://hub.test) is unreachable here: the reports wait in the kit's queue for the next run."""
    from sqlalchemy import select

    from partners.client.reports import QUEUE_FILE, ReportQueue, outbox

    r = run(home, "match", str(files["original"]), "--report", "--ref", "post-1", "--surface", "existing_content")
    assert r.exit_code == 0, r.output
    assert "queued 2 pending_review report(s)" in r.output  # the PDQ and the MD5 signal
    assert "waiting 2" in r.output and "the hub was not reached" in r.output
    queue = ReportQueue.open(home / QUEUE_FILE)
    try:
        assert len(queue.reports_for_ref("post-1")) == 2
        assert queue.waiting() == 2
        with queue.engine.connect() as conn:
            bodies = [json.loads(b) for b in conn.scalars(select(outbox.c.body))]
    finally:
        queue.close()
    by_signal = {b["signal"]["id"]: b for b in bodies}
    assert set(by_signal) == {"sig-pdq", "sig-md5"}
    for body in bodies:
        assert body["outcome"] == "pending_review" and body["surface"] == "existing_content"
        assert body["collection"] == "c1" and body["seq"] == 1 and body["distance"] == 0

    r = run(home, "match", str(files["other"]), "--report")
    assert "queued 0 pending_review report(s)" in r.output  # no match, no report


def test_match_ref_needs_report_and_a_single_item(home: Path, files: dict[str, Path]):
    r = run(home, "match", str(files["original"]), str(files["small"]), "--report", "--ref", "x")
    assert r.exit_code != 0 and "single item" in r.output
