"""The matcher's indexes, as the hub and the partner kit import them (no pdqhash, no Pillow here).

- :class:`PdqIndex`: PDQ, every stored hash within a Hamming distance (0..64), exact recall, incremental.
- :class:`ExactIndex`: MD5 and SHA-256, exact digests.
- :func:`save_pdq` / :func:`load_pdq`: ``.npy`` files and a JSON manifest, memory-mappable, checksummed.
"""

from __future__ import annotations

from partners.matching.exact_index import ExactIndex
from partners.matching.pdq_index import Hits, Layout, PdqIndex, PdqTable
from partners.matching.storage import load_pdq, save_pdq

__all__ = ["ExactIndex", "Hits", "Layout", "PdqIndex", "PdqTable", "load_pdq", "save_pdq"]
