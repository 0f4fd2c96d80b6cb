"""Hashing real images made here: near-duplicates match, different pictures do not, bad files give errors."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from partners.matching.errors import HashingError
from partners.matching.hashing import HashResult, hash_bytes, hash_file, hash_files
from partners.matching.signals import pdq_bits_to_hex, pdq_hex_to_words


def picture(seed: int = 7, w: int = 640, h: int = 480) -> Image.Image:
    """A synthetic photo-like picture: gradients, coloured shapes, seeded noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], axis=-1)
    img = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w - 100)), int(rng.integers(0, h - 100))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse([x0, y0, x0 + int(rng.integers(30, 200)), y0 + int(rng.integers(30, 200))], fill=colour)
        x0, y0 = int(rng.integers(0, w - 100)), int(rng.integers(0, h - 100))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.rectangle(
            [x0, y0, x0 + int(rng.integers(20, 150)), y0 + int(rng.integers(20, 150))], fill=colour
        )
    noisy = np.asarray(img).astype(np.int16) + rng.integers(-20, 21, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def encode(img: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def distance(a: HashResult, b: HashResult) -> int:
    assert a.pdq is not None and b.pdq is not None
    return int(np.bitwise_count(pdq_hex_to_words([a.pdq]) ^ pdq_hex_to_words([b.pdq])).sum())


@pytest.fixture(scope="module")
def original() -> Image.Image:
    return picture()


def test_digests_and_pdq_of_an_image(original: Image.Image) -> None:
    data = encode(original)
    result = hash_bytes(data)
    assert result.ok and result.error is None
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.pdq is not None and len(result.pdq) == 64 and result.pdq == result.pdq.lower()
    assert result.quality is not None and result.quality >= 50


def test_pdq_hex_is_the_reference_convention(original: Image.Image) -> None:
    """ThreatExchange and pdq-photo-hasher: the bit vector read most significant bit first, as one integer."""
    import pdqhash

    bits, _ = pdqhash.compute(np.asarray(original.convert("RGB")))
    reference = "%064x" % int("".join(str(int(b)) for b in bits), 2)  # noqa: UP031 - mirrors the reference code
    assert pdq_bits_to_hex(bits) == reference == hash_bytes(encode(original)).pdq


@pytest.mark.parametrize(
    ("name", "transform", "bound"),
    [
        ("resized to half", lambda im: encode(im.resize((320, 240))), 16),
        ("JPEG quality 70", lambda im: encode(im, "JPEG", quality=70), 16),
    ],
    ids=["resized", "jpeg70"],
)
def test_near_duplicates_match(original: Image.Image, name: str, transform, bound: int) -> None:  # type: ignore[no-untyped-def]
    d = distance(hash_bytes(encode(original)), hash_bytes(transform(original)))
    print(f"{name}: distance {d}")  # measured: resized 8, JPEG 70 0
    assert d <= bound


@pytest.mark.parametrize(
    ("name", "transform"),
    [
        ("mirrored", lambda im: encode(ImageOps.mirror(im))),
        ("heavy crop (half the picture)", lambda im: encode(im.crop((200, 150, 520, 420)))),
        ("another picture", lambda im: encode(picture(seed=99))),
    ],
    ids=["mirrored", "heavy-crop", "other"],
)
def test_mirror_crop_and_other_pictures_are_far(original: Image.Image, name: str, transform) -> None:  # type: ignore[no-untyped-def]
    d = distance(hash_bytes(encode(original)), hash_bytes(transform(original)))
    print(f"{name}: distance {d}")  # measured: mirrored 124, heavy crop 118, other 126 (no dihedral variants)
    assert d > 31


def test_exif_orientation_gives_the_upright_hash(original: Image.Image) -> None:
    upright = hash_bytes(encode(original, "JPEG", quality=95))
    stored_rotated = original.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: display rotated 90 degrees clockwise, undoing the stored rotation
    tagged = hash_bytes(encode(stored_rotated, "JPEG", quality=95, exif=exif.tobytes()))
    untagged = hash_bytes(encode(stored_rotated, "JPEG", quality=95))
    print(
        f"EXIF-tagged: distance {distance(upright, tagged)}, ignoring the tag: {distance(upright, untagged)}"
    )
    assert tagged.pdq == upright.pdq
    assert distance(upright, untagged) > 31


def test_non_image_and_unreadable_files_give_per_file_errors(tmp_path: Path, original: Image.Image) -> None:
    text = tmp_path / "notes.txt"
    text.write_bytes(b"not an image")
    truncated = tmp_path / "broken.jpg"
    truncated.write_bytes(encode(original, "JPEG")[:200])
    good = tmp_path / "good.png"
    good.write_bytes(encode(original))
    missing = tmp_path / "missing.png"
    folder = tmp_path / "a-directory"
    folder.mkdir()

    results = list(hash_files([text, truncated, good, missing, folder]))

    assert [r.path for r in results] == [str(p) for p in (text, truncated, good, missing, folder)]
    assert results[0].md5 == hashlib.md5(b"not an image").hexdigest()
    assert results[0].pdq is None and "not an image" in (results[0].error or "")
    assert results[1].sha256 is not None and results[1].pdq is None and results[1].error
    assert results[2].ok and results[2].pdq == hash_bytes(encode(original)).pdq
    for unreadable in results[3:]:
        assert unreadable.md5 is None and unreadable.error and "cannot read" in unreadable.error
    with pytest.raises(HashingError):
        hash_file(missing).raise_for_error()
