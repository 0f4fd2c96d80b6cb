"""Hashing media on the partner's machine: PDQ for images, vPDQ for videos, MD5 and SHA-256 of the raw bytes
for every file (a video's MD5 is its ``video_md5``).

The only module that imports Pillow, pdqhash and PyAV, and only inside functions, so the index modules (and
the hub, which has none of them installed) never load them.

vPDQ reproduces Meta's ``vpdq`` hasher (``hashing/filehasher.cpp``) with PyAV, whose wheels bundle FFmpeg
(docs/adr/0010-vpdq-with-pyav.md): the first video stream, decoded in order; frame n (counted from 0 as the
decoder returns them) is hashed when n is a multiple of int(seconds_per_hash x frame rate) (at least 1), the
frame rate being the stream's average rate or, when that is unknown, its guessed (r_frame_rate) rate; the
frame is converted to RGB24 at its own size with the area filter and hashed with PDQ; its timestamp is
n / frame rate in single precision, as vpdq computes it.

PDQ hex convention: 64 lowercase hex digits equal to the output of Meta's ``pdq-photo-hasher`` (and of
ThreatExchange's python code): see :func:`partners.matching.signals.pdq_bits_to_hex`.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from partners.matching.errors import HashingError
from partners.matching.signals import pdq_bits_to_hex
from partners.matching.vpdq import MAX_VPDQ_FRAMES, VpdqFrame, format_vpdq

# Pillow refuses images above this many pixels (decompression bombs) with an error, not a crash
MAX_IMAGE_PIXELS = 178_956_970
SECONDS_PER_HASH = 1.0  # vpdq's default sampling: one frame hashed per second of video
READ_BLOCK = 1 << 20  # bytes read at a time for a file's digests


@dataclass(frozen=True)
class HashResult:
    """The hashes of one file. ``error`` says why a part is missing: unreadable file (no hash at all), or
    neither a decodable image nor a decodable video (md5/sha256 only). A video has ``vpdq`` (canonical
    text, partners/matching/vpdq.py) and no ``pdq``; its ``video_md5`` is ``md5``."""

    path: str | None
    md5: str | None = None
    sha256: str | None = None
    pdq: str | None = None  # 64 lowercase hex digits
    quality: int | None = None  # PDQ quality 0..100; below ~50 the hash is unreliable
    error: str | None = None
    vpdq: str | None = None  # a video's frames (canonical vpdq text)

    @property
    def ok(self) -> bool:
        """True when every hash was computed."""
        return self.error is None

    def raise_for_error(self) -> None:
        """Raise :class:`HashingError` if hashing this file failed in part."""
        if self.error is not None:
            raise HashingError(f"{self.path or '<bytes>'}: {self.error}")


def hash_bytes(data: bytes, path: str | None = None) -> HashResult:
    """MD5, SHA-256 and PDQ (an image) or vPDQ (a video) of ``data``; anything else gives an error but keeps
    the digests."""
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    sha256 = hashlib.sha256(data).hexdigest()
    return _hash_media(lambda: io.BytesIO(data), path, md5, sha256)


def hash_file(path: str | os.PathLike[str]) -> HashResult:
    """Hash one file; never raises for a bad file, the result carries the error. The file is read in
    pieces and decoded from disk, so a long video is never held in memory whole."""
    name = os.fspath(path)
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    try:
        with Path(path).open("rb") as f:
            while block := f.read(READ_BLOCK):
                md5.update(block)
                sha256.update(block)
    except OSError as e:
        return HashResult(path=name, error=f"cannot read file: {e.strerror or e}")
    return _hash_media(lambda: name, name, md5.hexdigest(), sha256.hexdigest())


def _hash_media(source: Callable[[], Any], path: str | None, md5: str, sha256: str) -> HashResult:
    """PDQ if ``source()`` (a path or a new binary file object each call) is an image, else vPDQ if it is a
    video; otherwise the digests with the error."""
    try:
        pdq, quality = _pdq_of_image(source())
    except _NotAnImageError as not_image:
        try:
            frames = vpdq_of_video(source())
        except HashingError as e:
            reason = str(e) if not isinstance(e, _NotAVideoError) else f"{not_image}, nor {e}"
            return HashResult(path=path, md5=md5, sha256=sha256, error=reason)
        return HashResult(path=path, md5=md5, sha256=sha256, vpdq=format_vpdq(frames))
    except HashingError as e:
        return HashResult(path=path, md5=md5, sha256=sha256, error=str(e))
    return HashResult(path=path, md5=md5, sha256=sha256, pdq=pdq, quality=quality)


def hash_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[HashResult]:
    """Hash files one after another; a bad file yields a result with an error, the run goes on."""
    for path in paths:
        yield hash_file(path)


class _NotAnImageError(HashingError):
    """Pillow does not recognise the bytes as an image (they may be a video)."""


class _NotAVideoError(HashingError):
    """FFmpeg finds no video stream in the bytes."""


def vpdq_of_video(source: Any, seconds_per_hash: float = SECONDS_PER_HASH) -> list[VpdqFrame]:
    """The vPDQ frames of a video (a path or a binary file object), or :class:`HashingError`: no video
    stream, PyAV missing, or a stream that fails to decode (a corrupt or truncated file)."""
    try:
        import av
    except ImportError as e:
        raise _NotAVideoError("a video PyAV can decode (PyAV is not installed: the [match] extra)") from e
    frames: list[VpdqFrame] = []
    try:
        with av.open(source, mode="r") as container:
            if not container.streams.video:
                raise _NotAVideoError("a video FFmpeg can decode")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise HashingError("cannot hash video: its frame rate is unknown")
            every = max(int(seconds_per_hash * float(rate)), 1)
            for n, frame in enumerate(container.decode(stream)):
                if n % every:
                    continue
                rgb = frame.reformat(format="rgb24", interpolation="AREA").to_ndarray()
                pdq, quality = pdq_of_pixels(rgb)
                seconds = float(np.float32(n) / np.float32(float(rate)))
                frames.append(VpdqFrame(pdq, quality, round(seconds, 3)))
    except HashingError:
        raise
    except av.error.InvalidDataError as e:
        if not frames:
            raise _NotAVideoError("a video FFmpeg can decode") from e
        raise HashingError(f"cannot decode video after {len(frames)} hashed frame(s): {e}") from e
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise HashingError(f"cannot decode video: {e}") from e
    if not frames:
        raise HashingError("cannot hash video: no frame could be decoded")
    if len(frames) > MAX_VPDQ_FRAMES:
        raise HashingError(f"video too long: {len(frames)} hashed frames, at most {MAX_VPDQ_FRAMES}")
    return frames


def pdq_of_pixels(rgb: Any) -> tuple[str, int]:
    """PDQ hex and quality of an ``(h, w, 3)`` uint8 RGB array."""
    import numpy as np
    import pdqhash

    pixels = np.ascontiguousarray(rgb, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise HashingError(f"expected (h, w, 3) RGB pixels, got shape {pixels.shape}")
    bits, quality = pdqhash.compute(pixels)
    return pdq_bits_to_hex(bits), int(quality)


def _pdq_of_image(source: Any) -> tuple[str, int]:
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(source) as img:
            upright = ImageOps.exif_transpose(img)  # the picture as people see it, whatever the camera stored
            rgb = upright.convert("RGB")
    except UnidentifiedImageError as e:
        raise _NotAnImageError("not an image Pillow can decode") from e
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise HashingError(f"cannot decode image: {e}") from e
    import numpy as np

    return pdq_of_pixels(np.asarray(rgb))
