"""Small videos made in the tests: a few Pillow pictures, each held for some seconds, encoded with PyAV."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def picture(seed: int, w: int = 320, h: int = 240) -> Image.Image:
    """A picture with gradients, shapes and a little noise (PDQ quality 100), different for each seed."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, w)
    y = np.linspace(0, 255, h)
    base = np.add.outer(y * (seed % 3 + 1) % 256, x) / 2
    rgb = np.stack([base, base[::-1], base[:, ::-1]], axis=-1) + rng.integers(0, 8, size=(h, w, 3))
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        x0, y0 = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
        size = int(rng.integers(30, 90))
        draw.ellipse((x0, y0, x0 + size, y0 + size), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img


def make_video(
    path: Path,
    seeds: Sequence[int],
    *,
    seconds: int = 2,
    fps: int | Fraction = 10,
    size: tuple[int, int] = (320, 240),
    bit_rate: int = 600_000,
    codec: str = "mpeg4",
) -> Path:
    """An MP4 showing the picture of each seed for ``seconds`` seconds, at ``size`` and ``bit_rate``."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bit_rate
        for seed in seeds:
            frame = av.VideoFrame.from_image(picture(seed).resize(size))
            for _ in range(round(seconds * fps)):
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
