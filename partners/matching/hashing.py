"""Hashing media on the partner's machine: PDQ for images, MD5 and SHA-256 of the raw bytes for every file.

The only module that imports Pillow and pdqhash, and only inside functions, so the index modules (and the
hub, which has neither installed) never load them.

PDQ hex convention: 64 lowercase hex digits equal to the output of Meta's ``pdq-photo-hasher`` (and of
ThreatExchange's python code): see :func:`partners.matching.signals.pdq_bits_to_hex`.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from partners.matching.errors import HashingError
from partners.matching.signals import pdq_bits_to_hex

# Pillow refuses images above this many pixels (decompression bombs) with an error, not a crash
MAX_IMAGE_PIXELS = 178_956_970


@dataclass(frozen=True)
class HashResult:
    """The hashes of one file. ``error`` says why a part is missing: unreadable file (no hash at all) or not
    a decodable image (md5/sha256 only)."""

    path: str | None
    md5: str | None = None
    sha256: str | None = None
    pdq: str | None = None  # 64 lowercase hex digits
    quality: int | None = None  # PDQ quality 0..100; below ~50 the hash is unreliable
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when every hash was computed."""
        return self.error is None

    def raise_for_error(self) -> None:
        """Raise :class:`HashingError` if hashing this file failed in part."""
        if self.error is not None:
            raise HashingError(f"{self.path or '<bytes>'}: {self.error}")


def hash_bytes(data: bytes, path: str | None = None) -> HashResult:
    """MD5, SHA-256 and (for an image) PDQ of ``data``; a non-image gives an error but keeps the digests."""
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        pdq, quality = _pdq_of_image(data)
    except HashingError as e:
        return HashResult(path=path, md5=md5, sha256=sha256, error=str(e))
    return HashResult(path=path, md5=md5, sha256=sha256, pdq=pdq, quality=quality)


def hash_file(path: str | os.PathLike[str]) -> HashResult:
    """Hash one file; never raises for a bad file, the result carries the error."""
    name = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return HashResult(path=name, error=f"cannot read file: {e.strerror or e}")
    return hash_bytes(data, path=name)


def hash_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[HashResult]:
    """Hash files one after another; a bad file yields a result with an error, the run goes on."""
    for path in paths:
        yield hash_file(path)


def pdq_of_pixels(rgb: Any) -> tuple[str, int]:
    """PDQ hex and quality of an ``(h, w, 3)`` uint8 RGB array."""
    import numpy as np
    import pdqhash

    pixels = np.ascontiguousarray(rgb, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise HashingError(f"expected (h, w, 3) RGB pixels, got shape {pixels.shape}")
    bits, quality = pdqhash.compute(pixels)
    return pdq_bits_to_hex(bits), int(quality)


def _pdq_of_image(data: bytes) -> tuple[str, int]:
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as img:
            upright = ImageOps.exif_transpose(img)  # the picture as people see it, whatever the camera stored
            rgb = upright.convert("RGB")
    except UnidentifiedImageError as e:
        raise HashingError("not an image Pillow can decode") from e
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise HashingError(f"cannot decode image: {e}") from e
    import numpy as np

    return pdq_of_pixels(np.asarray(rgb))
