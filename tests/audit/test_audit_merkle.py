"""RFC 9162 Merkle trees: the shared vectors, a naive reference tree, the log model and compact ranges."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import merkle
from audit.errors import FormatError, ProofError
from audit.log import MemoryNodeStore, MerkleLog, required_keys_for_consistency, required_keys_for_inclusion
from audit.merkle import CompactRange, leaf_hash, node_hash

# Copied from transparency-dev/merkle's testdata (Apache-2.0); origin and licence in vectors/merkle/.
VECTORS = Path(__file__).resolve().parent / "vectors"
MERKLE_FILES = sorted((VECTORS / "merkle").rglob("*.json"))
# The probe counts of the copied testdata: a missing or emptied folder must fail, never pass as zero cases.
INCLUSION_PROBES = 98
CONSISTENCY_PROBES = 98


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _proof(value: list[str] | None) -> list[bytes]:
    return [_b64(p) for p in value or []]


def check_vector(path: Path) -> str:
    """Run one probe; returns its kind ("inclusion" or "consistency") once its expectation held."""
    v = json.loads(path.read_text())
    if "leafIdx" in v:
        kind = "inclusion"

        def check() -> None:
            merkle.verify_inclusion(
                v["leafIdx"], v["treeSize"], _b64(v["leafHash"]), _proof(v["proof"]), _b64(v["root"])
            )
    else:
        kind = "consistency"

        def check() -> None:
            merkle.verify_consistency(
                v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), _proof(v["proof"])
            )

    if v["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()
    return kind


@pytest.mark.parametrize("path", MERKLE_FILES, ids=[str(p.relative_to(VECTORS)) for p in MERKLE_FILES])
def test_vector(path: Path) -> None:
    check_vector(path)


def test_every_vector_ran() -> None:
    """All 196 probes run and hold: a parametrized test over an empty folder would report nothing, not fail."""
    kinds = [check_vector(path) for path in MERKLE_FILES]
    assert kinds.count("inclusion") == INCLUSION_PROBES
    assert kinds.count("consistency") == CONSISTENCY_PROBES
    assert (VECTORS / "merkle" / "LICENSE").is_file()


# A naive reference tree, straight from RFC 9162 section 2.1.
def naive_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(naive_root(leaves[:k]), naive_root(leaves[k:]))


def naive_path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if m < k:
        return [*naive_path(m, leaves[:k]), naive_root(leaves[k:])]
    return [*naive_path(m - k, leaves[k:]), naive_root(leaves[:k])]


def naive_subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [naive_root(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*naive_subproof(m, leaves[:k], b), naive_root(leaves[k:])]
    return [*naive_subproof(m - k, leaves[k:], False), naive_root(leaves[:k])]


def make_leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def flip(data: bytes, pos: int) -> bytes:
    pos %= len(data)
    return data[:pos] + bytes([data[pos] ^ 1]) + data[pos + 1 :]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.data())
def test_inclusion_agrees_with_naive_tree(size: int, data: st.DataObject) -> None:
    leaves = make_leaves(size)
    index = data.draw(st.integers(0, size - 1))
    log = MerkleLog(MemoryNodeStore())
    log.append(leaves)
    root = naive_root(leaves)
    proof = log.inclusion_proof(index)
    assert log.root() == root == merkle.root_of(leaves)
    assert proof == naive_path(index, leaves) == merkle.inclusion_proof(index, leaves)
    merkle.verify_inclusion(index, size, leaves[index], proof, root)
    pos = data.draw(st.integers(0, 10_000))
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, size, flip(leaves[index], pos), proof, root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, size, leaves[index], proof, flip(root, pos))
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:i], flip(proof[i], pos), *proof[i + 1 :]]
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, size, leaves[index], bad, root)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.data())
def test_consistency_agrees_with_naive_tree(size2: int, data: st.DataObject) -> None:
    leaves = make_leaves(size2)
    size1 = data.draw(st.integers(1, size2))
    log = MerkleLog(MemoryNodeStore())
    log.append(leaves[:size1])
    log.append(leaves[size1:])
    root1, root2 = naive_root(leaves[:size1]), naive_root(leaves)
    proof = log.consistency_proof(size1)
    assert log.root(size1) == root1
    assert proof == naive_subproof(size1, leaves, True) == merkle.consistency_proof(size1, leaves)
    merkle.verify_consistency(size1, size2, root1, root2, proof)
    pos = data.draw(st.integers(0, 10_000))
    with pytest.raises(ProofError):
        merkle.verify_consistency(size1, size2, flip(root1, pos), root2, proof)
    with pytest.raises(ProofError):
        merkle.verify_consistency(size1, size2, root1, flip(root2, pos), proof)
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:i], flip(proof[i], pos), *proof[i + 1 :]]
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size2, root1, root2, bad)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=8))
def test_compact_range_agrees_with_naive_tree(chunks: list[int]) -> None:
    leaves = make_leaves(sum(chunks))
    cr = CompactRange()
    done = 0
    for n in chunks:
        cr.extend(leaves[done : done + n])
        done += n
        assert cr.root() == naive_root(leaves[:done])
        again = CompactRange.from_dict(json.loads(json.dumps(cr.to_dict())))
        assert again == cr


def test_compact_range_rejects_bad_input() -> None:
    with pytest.raises(FormatError):
        CompactRange.from_dict({"size": 3, "hashes": [base64.b64encode(bytes(32)).decode()]})
    with pytest.raises(FormatError):
        CompactRange.from_dict({"size": 1, "hashes": ["not base64!"]})
    with pytest.raises(FormatError):
        CompactRange.from_dict({"size": "1", "hashes": []})


def test_log_reads_logarithmically_many_nodes() -> None:
    store = MemoryNodeStore()
    log = MerkleLog(store)
    for start in range(0, 5000, 700):
        log.append(make_leaves(5000)[start : start + 700])
    assert log.size == 5000
    assert len(store.nodes) < 2 * 5000
    for index in (0, 1234, 4999):
        assert len(required_keys_for_inclusion(index, 5000)) <= 2 * 13
    assert len(required_keys_for_consistency(1234, 5000)) <= 2 * 13
    store.reads = 0
    log.consistency_proof(1234)
    assert store.reads <= 26


def test_log_rejects_out_of_range() -> None:
    log = MerkleLog(MemoryNodeStore())
    log.append(make_leaves(3))
    with pytest.raises(ProofError):
        log.inclusion_proof(3)
    with pytest.raises(ProofError):
        log.root(4)
    with pytest.raises(ProofError):
        log.consistency_proof(0, 3)
    assert log.consistency_proof(3, 3) == []
    assert MerkleLog(MemoryNodeStore()).root() == hashlib.sha256(b"").digest()
