"""Benchmark of the reference PDQ matcher against numpy brute force, faiss and python-threatexchange's PDQIndex,
one thread each.

    .venv/bin/python benchmarks/bench_matcher.py           # 1M and 10M hashes (about 15-20 minutes)
    .venv/bin/python benchmarks/bench_matcher.py --quick   # 1M only
    .venv/bin/python benchmarks/bench_matcher.py --data structured --only ours matcher faiss-mih-16x16 faiss-mih-11x23
    .venv/bin/python benchmarks/bench_matcher.py --videos  # vPDQ: 10,000 videos of 100 frames, 60-frame queries

``--data uniform`` (the default): stored hashes are uniform random 256-bit values plus planted neighbours:
around each of the first 200 queries, one stored hash at every distance 0..64 (k random bits of the query
flipped). Random 256-bit hashes are never within 64 bits of each other in practice (P < 1e-20), so the
ground truth is the planted set; the tests check recall against a full brute force at small scale.

``--data structured``: hashes as real lists hold them, not uniform (``make_structured``): bits = sign of a
random projection of a 32-dimensional Gaussian plus noise (images share structure, so chunks fill unevenly),
a fifth of them in families of 2-8 near-duplicates (one picture re-encoded, cropped, watermarked: 0-24 bits
from the family's first member), queries half near-duplicates of stored hashes and half fresh draws. The
planted neighbours are added as for uniform data, and the ground truth of the first 100 queries is a full
brute force. The run prints the chunk skew: the expected size of the bucket a stored hash's chunk lands in,
divided by the same for uniform hashes (1 = uniform), per chunk of the index's layout.

Each competitor runs in its own subprocess (honest peak RSS, no shared caches), with
NUMBA_NUM_THREADS=OMP_NUM_THREADS=1 and faiss.omp_set_num_threads(1). Structured data is made once per size
and kept in the temporary directory (``hashfed-bench-structured-<n>.npz``) for the workers.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from partners.matching.pdq_index import KeyMap, PdqIndex

THRESHOLDS = (31, 52)
N_PLANTED_QUERIES = 200
N_BRUTE_QUERIES = 100  # structured data: queries whose ground truth is a full brute force
LATENT_RANK, LATENT_NOISE = 32, 0.7  # the structured model: 32 latent dimensions, noise of deviation 0.7
FAMILY_SHARE, MAX_FAMILY_FLIPS = 0.2, 24
COMPETITORS = ("ours", "matcher", "numpy", "faiss-flat", "faiss-mih-16x16", "faiss-mih-11x23", "pte-pdqindex")
Result = tuple[list[np.ndarray], list[np.ndarray]]  # per query: ids, distances


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_data(n: int, n_queries: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, list[dict[int, int]]]:
    """Stored words (n, 4) in huge-page memory, queries, and for each query the planted {id: distance}."""
    from partners.matching import memory

    rng = np.random.default_rng(seed)
    queries = rng.integers(0, 2**64, size=(n_queries, 4), dtype=np.uint64)
    stored = memory.empty((n, 4), np.uint64)
    step = 1 << 20
    for i in range(0, n, step):
        stored[i : i + step] = rng.integers(0, 2**64, size=(min(step, n - i), 4), dtype=np.uint64)
    truth: list[dict[int, int]] = [{} for _ in range(n_queries)]
    slots = rng.choice(n, size=N_PLANTED_QUERIES * 65, replace=False)
    for qi in range(N_PLANTED_QUERIES):
        for k in range(65):
            row = int(slots[qi * 65 + k])
            word = queries[qi].copy()
            for bit in rng.choice(256, size=k, replace=False):
                word[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
            stored[row] = word
            truth[qi][row] = k
    return stored, queries, truth  # type: ignore[return-value]


def make_structured(n: int, n_queries: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, list[dict[int, int]]]:
    """Structured stored words (n, 4), queries and the ground truth of each query (see the module docstring):
    planted neighbours for the first 200, and for the first 100 every stored hash within 64 (brute force).
    Made once per (n, seed) and kept in the temporary directory."""
    from partners.matching import memory

    cache = Path(tempfile.gettempdir()) / f"hashfed-bench-structured-{n}-{n_queries}-{seed}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            stored = memory.copy_of(z["stored"], np.uint64)
            queries, truth_rows = z["queries"], z["truth"]
        truth: list[dict[int, int]] = [{} for _ in range(n_queries)]
        for qi, row, d in truth_rows.tolist():
            truth[qi][row] = d
        return stored, queries, truth  # type: ignore[return-value]
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((LATENT_RANK, 256), dtype=np.float32)

    def latent(m: int) -> np.ndarray:
        x = rng.standard_normal((m, LATENT_RANK), dtype=np.float32) @ proj
        x += LATENT_NOISE * rng.standard_normal((m, 256), dtype=np.float32)  # the projection's deviation: 5.7
        return np.packbits(x > 0, axis=1).view(">u8").astype(np.uint64)

    stored = memory.empty((n, 4), np.uint64)
    step = 1 << 18
    for i in range(0, n, step):
        stored[i : i + step] = latent(min(step, n - i))
    # families: the first fifth of the rows, in runs of 2..8 that copy their run's first row with about k bits
    # flipped (each bit with probability k / 256, k uniform in 0..24)
    sizes = rng.integers(2, 9, size=int(n * FAMILY_SHARE) // 2)
    sizes = sizes[np.cumsum(sizes) <= n * FAMILY_SHARE]
    first = np.repeat(np.cumsum(sizes) - sizes, sizes)
    for i in range(0, len(first), step):
        rows = np.arange(i, min(i + step, len(first)))
        rate = rng.integers(0, MAX_FAMILY_FLIPS + 1, size=len(rows)).astype(np.float32) / 256
        mask = np.packbits(rng.random((len(rows), 256), dtype=np.float32) < rate[:, None], axis=1)
        copies = rows != first[rows]
        flipped = stored[first[rows]] ^ mask.view(">u8").astype(np.uint64)
        stored[rows[copies]] = flipped[copies]
    queries = latent(n_queries)
    near = rng.choice(n, size=n_queries // 2, replace=False)
    for qi, r in zip(range(1, n_queries, 2), near, strict=False):
        queries[qi] = flip(rng, stored[r], int(rng.integers(0, MAX_FAMILY_FLIPS + 1)))
    truth = plant(rng, stored, queries)
    for qi in range(N_BRUTE_QUERIES):
        dist = np.bitwise_count(stored ^ queries[qi]).sum(axis=1, dtype=np.int64)
        hits = np.flatnonzero(dist <= 64)
        truth[qi] = dict(zip(hits.tolist(), dist[hits].tolist(), strict=True))
    rows = [(qi, r, d) for qi, t in enumerate(truth) for r, d in t.items()]
    np.savez(cache, stored=stored, queries=queries, truth=np.array(rows, dtype=np.int64).reshape(-1, 3))
    return stored, queries, truth  # type: ignore[return-value]


def flip(rng: np.random.Generator, word: np.ndarray, k: int) -> np.ndarray:
    out = word.copy()
    for bit in rng.choice(256, size=k, replace=False):
        out[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
    return out


def plant(rng: np.random.Generator, stored: np.ndarray, queries: np.ndarray) -> list[dict[int, int]]:
    """Around each of the first 200 queries, a stored hash at every distance 0..64: {row: distance}."""
    truth: list[dict[int, int]] = [{} for _ in range(len(queries))]
    slots = rng.choice(len(stored), size=N_PLANTED_QUERIES * 65, replace=False)
    for qi in range(N_PLANTED_QUERIES):
        for k in range(65):
            row = int(slots[qi * 65 + k])
            stored[row] = flip(rng, queries[qi], k)
            truth[qi][row] = k
    return truth


def chunk_skew(stored: np.ndarray, keymap: KeyMap | None = None) -> list[float]:
    """Per chunk of the index's layout for this size: the expected size of the bucket that a new hash drawn
    like the stored ones meets, sum(n_b (n_b - 1)) / n, over the same for uniform hashes, (n - 1) / 2^bits.
    Both grow with n alike, so the ratio is a property of the data's distribution (1 = uniform). Chunks
    in natural bit order (the data's skew), or those of ``keymap`` (what an index with that key map meets)."""
    from partners.matching.kernels import build
    from partners.matching.pdq_index import Layout

    n = len(stored)
    lay = Layout.for_size(n)
    keys = np.empty(n, dtype=np.int64)
    out = []
    for c in range(lay.chunks):
        if keymap is None:
            build.chunk_keys(stored, c * lay.bits, lay.bits, keys)
        else:
            keymap.chunk_keys(stored, c, keys)
        counts = np.bincount(keys, minlength=1 << lay.bits).astype(np.float64)
        out.append(float((counts * (counts - 1)).sum() / n / ((n - 1) / (1 << lay.bits))))
    return out


def recall(results: Result, truth: list[dict[int, int]], threshold: int, first: int) -> tuple[float, int]:
    """Share of planted neighbours within the threshold found (with the right distance), and wrong answers."""
    expected = found = wrong = 0
    for qi in range(first):
        want = {i: d for i, d in truth[qi].items() if d <= threshold}
        got = dict(zip(results[0][qi].tolist(), results[1][qi].tolist(), strict=True))
        expected += len(want)
        found += sum(1 for i, d in want.items() if got.get(i) == d)
        wrong += sum(1 for i, d in got.items() if d > threshold or (i in truth[qi] and truth[qi][i] != d))
    return (found / expected if expected else 1.0), wrong


def timed(fn: Callable[[Any], Result], queries: Any, batch: int, budget_s: float) -> tuple[float, Result, int]:
    """Queries per second of ``fn`` on batches of ``batch`` queries, until the budget or queries run out."""
    ids: list[np.ndarray] = []
    dists: list[np.ndarray] = []
    start = time.perf_counter()
    done = 0
    while done < len(queries):
        r = fn(queries[done : done + batch])
        ids += r[0]
        dists += r[1]
        done += len(r[0])
        if time.perf_counter() - start > budget_s and done >= min(len(queries), batch):
            break
    return done / (time.perf_counter() - start), (ids, dists), done


def worker(name: str, n: int, budget: float, data: str = "uniform") -> dict[str, object]:
    """Build one competitor over n hashes and measure it; returns a JSON-able row set."""
    stored, queries, truth = make_data(n, 2000) if data == "uniform" else make_structured(n, 2000)
    rows: dict[str, object] = {"name": name, "n": n, "data": data}
    if name == "matcher":  # input data like ``stored``, so not part of "build s": a UUID signal id per hash
        sids = np.random.default_rng(3).integers(0, 2**64, size=(n, 2), dtype=np.uint64)
        sids[:, 1] = np.arange(n, dtype=np.uint64)  # unique; row i's signal is recognisable in the results
        gone = delta_rows(n)[1]
        removed = [str(uuid.UUID(int=(int(hi) << 64) | int(lo))) for hi, lo in sids[gone].tolist()]  # the delta's
    search: Callable[[Any, int], Result]
    inputs: Any = queries  # what ``search`` takes
    single_n = {31: 2000, 52: 200}
    batch = 1000
    if name == "ours":
        from partners.matching.pdq_index import PdqIndex

        t0 = warm_up(rows, lambda: PdqIndex().warmup())
        index = PdqIndex.build(stored, np.arange(n, dtype=np.int64), copy=False, background_merge=False)
        rows["keymap"] = "yes" if index._state.main.table.keymap is not None else "no"  # docs/adr/0012
        del stored

        def search(q: np.ndarray, d: int) -> Result:
            hits = index.search(q, d)
            per = hits.per_query(len(q))
            return [p[0] for p in per], [p[1] for p in per]

    elif name == "matcher":  # the Matcher facade with a UUID signal id per hash: its memory and overhead
        from partners.matching.matcher import Matcher
        from partners.matching.signals import pdq_words_to_hex

        t0 = warm_up(rows, lambda: Matcher().warmup())
        matcher = Matcher(background_merge=False)
        matcher.set_threshold("bench", 64)  # the query's threshold decides
        matcher.add_pdq("bench", sids, stored, copy=False)  # the matcher adopts both arrays
        del stored, sids
        batch = 1000

        inputs = pdq_words_to_hex(queries)  # partners send hex: converting is not the matcher's work

        def search(q: list[str], d: int) -> Result:
            found = matcher.match("pdq", q, threshold=d)
            row = [[int(str(m.signal_id)[-8:], 16) for m in f] for f in found]  # the row is the low 32 bits
            ids_ = [np.array(r, dtype=np.int64) for r in row]
            return ids_, [np.array([m.distance for m in f], dtype=np.int64) for f in found]

    elif name == "numpy":
        t0 = time.perf_counter()
        single_n = {31: 20, 52: 20}
        batch = 0

        def search(q: np.ndarray, d: int) -> Result:
            ids, dists = [], []
            for one in q:
                dist = np.bitwise_count(stored ^ one).sum(axis=1, dtype=np.int64)
                rows_ = np.flatnonzero(dist <= d)
                ids.append(rows_)
                dists.append(dist[rows_])
            return ids, dists

    elif name == "pte-pdqindex":  # python-threatexchange's PDQIndex (faiss multi-hash 16 x 16 behind its API)
        import faiss
        from threatexchange.signal_type.pdq.pdq_index import PDQIndex

        from partners.matching.signals import pdq_words_to_hex

        faiss.omp_set_num_threads(1)

        class AtThreshold(PDQIndex):  # type: ignore[misc]
            """PDQIndex queries at its class's threshold (31); the benchmark's thresholds are set here."""

            threshold = 31

            @classmethod
            def get_match_threshold(cls) -> int:
                return cls.threshold

        hexes = pdq_words_to_hex(stored)  # its API takes hex strings: made before the build is timed
        inputs = pdq_words_to_hex(queries)
        del stored
        t0 = time.perf_counter()
        pte = AtThreshold(zip(hexes, range(n), strict=True))
        del hexes
        single_n, batch = {31: 500, 52: 20}, 0

        def search(q: list[str], d: int) -> Result:
            AtThreshold.threshold = d
            found = [pte.query(h) for h in q]
            return (
                [np.array([m.metadata for m in f], dtype=np.int64) for f in found],
                [np.array([m.similarity_info.distance for m in f], dtype=np.int64) for f in found],
            )

    else:
        import faiss

        faiss.omp_set_num_threads(1)
        t0 = time.perf_counter()
        codes = stored.astype(">u8").view(np.uint8).reshape(n, 32)
        del stored
        if name == "faiss-flat":
            fx = faiss.IndexBinaryFlat(256)
            single_n, batch = {31: 20, 52: 20}, 100
        else:
            nhash, b = (16, 16) if name.endswith("16x16") else (11, 23)
            fx = faiss.IndexBinaryMultiHash(256, nhash, b)
            rows["setting"] = f"nhash={nhash} b={b} nflip=d//nhash"
            single_n, batch = {31: 500, 52: 20}, 100
        fx.add(codes)

        def search(q: np.ndarray, d: int) -> Result:
            if name != "faiss-flat":
                fx.nflip = d // fx.nhash  # pigeonhole: exact recall needs nflip >= floor(d / nhash)
            qc = q.astype(">u8").view(np.uint8).reshape(len(q), 32)
            lims, dist, ids = fx.range_search(qc, d + 1)  # faiss range search is strict: distance < radius
            return (
                [ids[lims[i] : lims[i + 1]] for i in range(len(q))],
                [dist[lims[i] : lims[i + 1]].astype(np.int64) for i in range(len(q))],
            )

    rows["build_s"] = round(time.perf_counter() - t0, 2)
    singles = batches = inputs
    if name in ("ours", "matcher"):
        # untimed warm-up, then single queries and batches over the query set repeated (budget-bound): the
        # first 2,000 queries alone took 0.1 s at 1M (two batches of 1,000: 60 ms), short enough for another
        # job on the machine, or one full collection of Python's garbage collector (~30 ms here), to halve
        # the figure
        timed(lambda q: search(q, 31), inputs[:200], 1, budget)
        singles = batches = inputs * 5 if name == "matcher" else np.concatenate([queries] * 5)
        single_n = {31: len(singles), 52: len(singles)}
    for d in THRESHOLDS:
        qps, res, done = timed(lambda q, d=d: search(q, d), singles[: single_n[d]], 1, budget)
        rows[f"single_{d}"] = round(qps, 1)
        rows[f"recall_{d}"], rows[f"wrong_{d}"] = recall(res, truth, d, min(done, N_PLANTED_QUERIES))
        if batch:
            qps, res, done = timed(lambda q, d=d: search(q, d), batches, batch, budget)
            rows[f"batch_{d}"] = round(qps, 1)
            r, w = recall(res, truth, d, min(done, N_PLANTED_QUERIES))
            rows[f"recall_{d}"] = min(r, float(rows[f"recall_{d}"]))  # type: ignore[arg-type]
            rows[f"wrong_{d}"] = int(rows[f"wrong_{d}"]) + w  # type: ignore[call-overload]
    if name == "ours":
        adds, gone = delta_rows(n)
        apply = functools.partial(index.apply_delta, adds, np.arange(n, n + len(adds)), gone)
        rows.update(delta(index, apply, n, queries, truth, search, budget))
    if name == "matcher":  # the same delta through the facade: signals added and removed by id
        rows.update(
            delta(matcher._pdq, functools.partial(matcher_delta, matcher, n, removed), n, inputs, truth, search, budget)
        )
    rows["peak_rss_mb"] = round(peak_rss_mb())
    return rows


def warm_up(rows: dict[str, object], load: Callable[[], None]) -> float:
    """Load the kernels (numba's cache, or a compilation of ~10-15 s after a change of the code or the CPU),
    timed as "warm-up s" and not as the build: returns the time the build starts."""
    t = time.perf_counter()
    load()
    rows["warmup_s"] = round(time.perf_counter() - t, 2)
    return time.perf_counter()


def delta_rows(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The delta's 10,000 added hashes (ids n, n + 1, ...) and the 1,000 stored rows it removes."""
    rng = np.random.default_rng(2)
    return rng.integers(0, 2**64, size=(10_000, 4), dtype=np.uint64), rng.choice(n, size=1_000, replace=False)


def delta(
    index: PdqIndex,
    apply: Callable[[], None],
    n: int,
    queries: Any,
    truth: list[dict[int, int]],
    search: Callable[..., Result],
    budget: float,
) -> dict[str, object]:
    """A 10,000-hash delta (10,000 adds, 1,000 removes: ``delta_rows``, applied by ``apply``) with the merge
    of ``index`` in the background, and q/s at d <= 31 on single queries (the same ones, in the same order)
    just before it, right after it (from its return until the merge is done, at least 500 queries: the side
    table is searched and the merge runs on the other core), and after the merge; the merge's time; recall
    against the planted truth less the removed rows."""
    rows: dict[str, object] = {}
    adds, gone = delta_rows(n)
    many = queries * 5 if isinstance(queries, list) else np.concatenate([queries] * 5)  # longer runs
    rows["single_31_before"] = round(timed(lambda q: search(q, 31), many, 1, budget)[0], 1)
    index.background_merge = True
    t = time.perf_counter()
    apply()
    rows["delta_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    ids: list[np.ndarray] = []
    dists: list[np.ndarray] = []
    while index.merge_running or len(ids) < 500:
        r = search(queries[len(ids) % len(queries) :][:1], 31)
        ids += r[0]
        dists += r[1]
    rows["single_31_after_delta"] = round(len(ids) / (time.perf_counter() - t), 1)
    index.wait_for_merge()
    kind, seconds = index.last_merge or ("none", 0.0)
    rows["merge"], rows["merge_s"] = kind, round(seconds, 3)
    qps, res2, done2 = timed(lambda q: search(q, 31), many, 1, budget)
    rows["single_31_merged"] = round(qps, 1)
    removed = set(gone.tolist())
    left = [{i: d for i, d in t.items() if i not in removed} for t in truth]
    r1, w1 = recall((ids, dists), left, 31, min(len(ids), N_PLANTED_QUERIES))
    r2, w2 = recall(res2, left, 31, min(done2, N_PLANTED_QUERIES))
    rows["recall_delta"], rows["wrong_delta"] = min(r1, r2), w1 + w2
    from partners.matching.signals import pdq_words_to_hex

    found = search(adds[:100] if not isinstance(queries, list) else pdq_words_to_hex(adds[:100]), 0)
    rows["delta_found"] = sum(int(n + i in f[0].tolist()) for i, f in enumerate(zip(*found, strict=True)))
    return rows


def matcher_delta(matcher: Any, n: int, removed: list[str]) -> None:
    """``delta_rows`` through the facade: 10,000 UUID signals added (row n + i's id ends in n + i), and the
    1,000 signals of the removed rows removed by their UUID strings."""
    adds, _ = delta_rows(n)
    new = np.random.default_rng(4).integers(0, 2**64, size=(len(adds), 2), dtype=np.uint64)
    new[:, 1] = np.arange(n, n + len(adds), dtype=np.uint64)
    matcher.add_pdq("bench", new, adds)
    matcher.remove("bench", removed)


def run(competitor: str, n: int, budget: float, data: str = "uniform") -> dict[str, object]:
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--worker", competitor, "--n", str(n), "--budget", str(budget), "--data", data]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"name": competitor, "n": n, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if v < 10 else f"{v:,.0f}"
    return str(v)


def print_table(rows: list[dict[str, object]]) -> None:
    cols = [
        ("n", "n"), ("name", "matcher"), ("warmup_s", "warm-up s"), ("build_s", "build s"), ("single_31", "q/s d31"),
        ("batch_31", "q/s d31 b1000"), ("single_52", "q/s d52"), ("batch_52", "q/s d52 b1000"),
        ("recall_31", "recall d31"), ("recall_52", "recall d52"), ("wrong_31", "wrong"),
        ("wrong_52", "wrong"), ("peak_rss_mb", "peak RSS MB"), ("delta_s", "10k delta s"), ("keymap", "key map"),
    ]  # fmt: skip
    delta_cols = [
        ("n", "n"), ("name", "matcher"), ("single_31_before", "q/s d31 before delta"),
        ("single_31_after_delta", "right after delta"), ("single_31_merged", "after merge"), ("merge", "merge"),
        ("merge_s", "merge s"), ("recall_delta", "recall d31"),
        ("wrong_delta", "wrong"), ("delta_found", "adds found /100"),
    ]  # fmt: skip
    _table(cols, rows)
    with_delta = [r for r in rows if "single_31_before" in r]
    if with_delta:
        print()
        _table(delta_cols, with_delta)
    for r in rows:
        if "error" in r or "setting" in r:
            print(f"{r['name']} n={r['n']}: {r.get('setting') or ''} {r.get('error') or ''}")


def _table(cols: list[tuple[str, str]], rows: list[dict[str, object]]) -> None:
    table = [[h for _, h in cols]] + [[fmt(r.get(k)) for k, _ in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    for i, line in enumerate(table):
        print(" | ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M hashes only")
    parser.add_argument("--only", nargs="*", choices=COMPETITORS, help="run these competitors only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, default=4.0, help="seconds per timed measurement")
    parser.add_argument("--data", choices=("uniform", "structured"), default="uniform", help="the stored hashes")
    parser.add_argument("--sizes", type=int, nargs="*", help="numbers of stored hashes (default 1M and 10M)")
    parser.add_argument("--videos", action="store_true", help="the vPDQ benchmark instead")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.budget, args.data)))
        return
    if args.videos:
        bench_videos()
        return
    sizes = args.sizes or ([1_000_000] if args.quick else [1_000_000, 10_000_000])
    rows = []
    for n in sizes:
        if args.data == "structured":
            from partners.matching.pdq_index import KeyMap, Layout

            started = time.perf_counter()
            stored = make_structured(n, 2000)[0]
            skew = chunk_skew(stored)
            print(
                f"# structured n={n:,}: made in {time.perf_counter() - started:.0f} s; chunk skew against uniform: "
                f"mean {np.mean(skew):.1f}x, min {min(skew):.1f}x, max {max(skew):.1f}x",
                flush=True,
            )
            keymap = KeyMap.choose(stored, Layout.for_size(n))
            if keymap is not None:  # what the index meets: it spreads correlated bits over its chunks
                skew = chunk_skew(stored, keymap)
                print(
                    f"# the index's key map (chunk bits chosen from the data, docs/adr/0012): chunk skew "
                    f"mean {np.mean(skew):.1f}x, min {min(skew):.1f}x, max {max(skew):.1f}x",
                    flush=True,
                )
            del stored
        for competitor in args.only or COMPETITORS:
            started = time.perf_counter()
            rows.append(run(competitor, n, args.budget, args.data))
            print(f"# {competitor} n={n:,}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print(f"# {os.cpu_count()} CPUs, one thread per matcher; q/s = queries per second on one core; data {args.data}")
    print_table(rows)


def bench_videos(n_videos: int = 10_000, frames: int = 100, query_frames: int = 60) -> None:
    """vPDQ: a collection of ``n_videos`` videos of ``frames`` unique frames (uniform random hashes), and
    single queries of ``query_frames`` frames: four fifths near (10 bits) a stored video's frames, the rest
    random (so the stored video reaches P = 80 on the query side). Prints the add time and ms per query on
    one core."""
    from partners.matching import Matcher, pdq_words_to_hex
    from partners.matching.vpdq import VpdqFrame, format_vpdq

    rng = np.random.default_rng(5)
    matcher = Matcher(background_merge=False)
    matcher.warmup()
    words = rng.integers(0, 2**64, size=(n_videos * frames, 4), dtype=np.uint64)
    hexes = pdq_words_to_hex(words)
    def value(hashes: list[str]) -> str:
        return format_vpdq(VpdqFrame(h, 100, float(i)) for i, h in enumerate(hashes))

    values = [(str(uuid.UUID(int=v + 1)), value(hexes[v * frames : (v + 1) * frames])) for v in range(n_videos)]
    started = time.perf_counter()
    for i in range(0, n_videos, 1000):
        matcher.add("videos", "vpdq", values[i : i + 1000])
    matcher._frames.merge(wait=True)
    added = time.perf_counter() - started
    queries = []
    for _ in range(200):
        v = int(rng.integers(n_videos))
        near = [flip(rng, words[v * frames + i], 10) for i in range(query_frames * 4 // 5)]
        other = rng.integers(0, 2**64, size=(query_frames - len(near), 4), dtype=np.uint64)
        queries.append(value(pdq_words_to_hex(np.concatenate([np.array(near), other]))))
    matcher.match_vpdq(queries[:5])
    started = time.perf_counter()
    found = sum(len(matcher.match_vpdq([q])[0]) for q in queries)
    per = (time.perf_counter() - started) / len(queries)
    print(f"# vPDQ: {n_videos:,} videos x {frames} frames = {n_videos * frames:,} frame hashes, one core")
    print(f"add (batches of 1,000 videos, merged): {added:.1f} s")
    print(f"{query_frames}-frame query: {per * 1000:.2f} ms ({len(queries)} queries, {found} candidate videos found)")


if __name__ == "__main__":
    main()
