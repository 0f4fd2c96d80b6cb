"""pdq.js in Chromium gives the `pdqhash` reference's hash and quality on the same RGB pixels, bit for bit.

The images are made here with Pillow: gradients, noise, blurred (photo-like, lower quality) and a JPEG
round trip, square and not, from below PDQ's minimum size to large enough that the reference box-filters with
windows of 8 and 12 pixels before decimating to 64x64. Both sides get the same decoded pixels.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFilter

from partners.matching.hashing import hash_bytes, pdq_of_pixels
from tests.browser import chromium_session

PDQ_JS = Path(__file__).resolve().parents[2] / "partners" / "intake" / "static" / "pdq.js"

# (width, height): the minimum size, below it (the reference's all-zero hash), exactly 64x64 (no blur),
# non-square, odd, and large (window sizes (w+127)//128 up to 12).
SIZES = [(5, 5), (4, 9), (64, 64), (63, 65), (80, 100), (320, 240), (131, 257), (1000, 129), (1024, 768), (1500, 1100)]


def _image(width: int, height: int, seed: int, blur: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 255 * x / max(width - 1, 1)
    g = 255 * y / max(height - 1, 1)
    b = 127 + 120 * np.sin((x + 2 * y) / max(width, height) * 6.3)
    noisy = np.stack([r, g, b], axis=-1) + rng.normal(0, 40, (height, width, 3))
    img = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(img)


def _jpeg_round_trip(pixels: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=70)
    with Image.open(io.BytesIO(buf.getvalue())) as img:
        return np.asarray(img.convert("RGB"))


def _cases() -> list[tuple[str, np.ndarray]]:
    cases = []
    for i, (w, h) in enumerate(SIZES):
        cases.append((f"noise {w}x{h}", _image(w, h, i, 0)))
        cases.append((f"blurred {w}x{h}", _image(w, h, 100 + i, max(w, h) / 40)))
    cases.append(("jpeg 640x480", _jpeg_round_trip(_image(640, 480, 7, 2))))
    cases.append(("flat grey 70x50", np.full((50, 70, 3), 128, np.uint8)))
    cases.append(("linear gradient 256x256", np.asarray(Image.linear_gradient("L").convert("RGB"))))
    cases.append(("radial gradient 256x256", np.asarray(Image.radial_gradient("L").convert("RGB"))))
    return cases


def _distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A blank page with pdq.js loaded."""
    for driver in chromium_session(tmp_path_factory.mktemp("chromium")):
        driver.get("about:blank")
        driver.execute_script(PDQ_JS.read_text())
        yield driver


def _in_browser(page: Any, pixels: np.ndarray) -> dict[str, Any]:
    height, width, _ = pixels.shape
    encoded = base64.b64encode(np.ascontiguousarray(pixels).tobytes()).decode()
    return page.execute_script(
        """
        const raw = atob(arguments[0]);
        const rgb = new Uint8Array(raw.length);
        for (let i = 0; i < raw.length; i++) rgb[i] = raw.charCodeAt(i);
        return window.HashfedPDQ.fromRGB(rgb, arguments[1], arguments[2]);
        """,
        encoded,
        width,
        height,
    )


def test_pdq_js_equals_the_reference_bit_for_bit(page: Any) -> None:
    results = []
    for name, pixels in _cases():
        expected_hash, expected_quality = pdq_of_pixels(pixels)
        got = _in_browser(page, pixels)
        results.append((name, _distance(got["hash"], expected_hash), got["quality"], expected_quality))
    assert [r for r in results if r[1] != 0 or r[2] != r[3]] == []
    # The set covers hashable and unhashable images and a spread of qualities, not only saturated ones.
    qualities = {r[3] for r in results}
    assert 0 in qualities and 100 in qualities and len(qualities) >= 5


def test_the_all_zero_hash_below_the_minimum_size(page: Any) -> None:
    got = _in_browser(page, _image(4, 9, 1, 0))
    assert got == {"hash": "0" * 64, "quality": 0}


@pytest.mark.parametrize("size", [0, 1, 55, 56, 64, 1000, 100_003], ids=lambda n: f"{n} bytes")
def test_md5_in_javascript_equals_hashlib(page: Any, size: int) -> None:
    data = bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8))
    got = page.execute_script(
        """
        const raw = atob(arguments[0]);
        const bytes = new Uint8Array(raw.length);
        for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
        return window.HashfedPDQ.md5(bytes.buffer);
        """,
        base64.b64encode(data).decode(),
    )
    assert got == hashlib.md5(data, usedforsecurity=False).hexdigest()


def _decoded_in_browser(page: Any, data: bytes, mime: str) -> dict[str, Any]:
    """PDQ of a file as the intake page computes it: Chromium decodes it, draws it on a canvas, pdq.js hashes."""
    return page.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const raw = atob(arguments[0]);
        const bytes = new Uint8Array(raw.length);
        for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
        createImageBitmap(new Blob([bytes], {type: arguments[1]})).then((bitmap) => {
          const canvas = document.createElement("canvas");
          canvas.width = bitmap.width;
          canvas.height = bitmap.height;
          const context = canvas.getContext("2d", {willReadFrequently: true});
          context.drawImage(bitmap, 0, 0);
          const image = context.getImageData(0, 0, bitmap.width, bitmap.height);
          done(window.HashfedPDQ.fromRGBA(image.data, image.width, image.height));
        }, (e) => done({error: String(e)}));
        """,
        base64.b64encode(data).decode(),
        mime,
    )


def _encoded(pixels: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return buf.getvalue()


def test_files_decoded_by_chromium_hash_as_the_kit_hashes_them(page: Any) -> None:
    """Chromium's decoding against Pillow's: a PNG decodes to the same pixels (distance 0); JPEG decoders may
    round differently (both use libjpeg-turbo here), which may move the PDQ by a few bits only."""
    distances = {}
    for fmt, mime in (("PNG", "image/png"), ("JPEG", "image/jpeg")):
        for i, (w, h) in enumerate([(640, 480), (333, 500), (1200, 900)]):
            data = _encoded(_image(w, h, 50 + i, max(w, h) / 200), fmt)
            kit = hash_bytes(data)
            got = _decoded_in_browser(page, data, mime)
            distances[(fmt, w, h)] = _distance(got["hash"], kit.pdq or "")
    assert {k: d for k, d in distances.items() if k[0] == "PNG"} == {k: 0 for k in distances if k[0] == "PNG"}
    assert max(distances.values()) <= 16, distances
