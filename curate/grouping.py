"""Find every pair of 64-bit hashes within a Hamming threshold, then group them (union-find); and
the pairs dedupe groups: exact pixel matches and near perceptual-hash matches (mirrored too).

The search is multi-index hashing with the generalised pigeonhole principle: the
64 bits are cut into `m` chunks and chunk `i` is given a radius `t_i` with
sum(t_i) >= T - m + 1. Two hashes at distance <= T then differ by at most `t_i`
bits in at least one chunk `i`, so probing each chunk's table with every pattern
of <= t_i flipped bits finds every pair (no approximation). The chunking is
chosen per call by a small cost model (table look-ups plus candidates to
verify). Everything is vectorised numpy; there is no per-hash Python loop.
"""
from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

BITS = 64
MAX_CHUNK_BITS = 24      # a count table of 2**24 int64 is 128 MiB: the largest we allow
_BLOCK = 1 << 18         # queries per vectorised block (bounds memory)


@dataclass(frozen=True)
class Chunk:
    offset: int   # lowest bit of the chunk
    bits: int
    radius: int   # probe patterns with up to this many flipped bits; -1 = chunk not probed

    @property
    def probes(self) -> int:
        return sum(math.comb(self.bits, k) for k in range(self.radius + 1)) if self.radius >= 0 else 0


def plan(n: int, threshold: int, bits: int = BITS) -> list[Chunk]:
    """The cheapest exact chunking for `n` hashes at Hamming `threshold` (cost model, not timing)."""
    if not 0 <= threshold < bits:
        raise ValueError(f"threshold must be in [0, {bits - 1}], got {threshold}")
    best, best_cost = None, math.inf
    for m in range(1, 17):
        size = [bits // m + (1 if i < bits % m else 0) for i in range(m)]
        if max(size) > MAX_CHUNK_BITS:
            continue
        # sum of radii must reach T - m + 1 (radius -1: chunk skipped); spread evenly,
        # the first (largest) chunks taking the remainder
        total = threshold + 1
        radii = [total // m - 1 + (1 if i < total % m else 0) for i in range(m)]
        chunks, off = [], 0
        for b, r in zip(size, radii):
            chunks.append(Chunk(off, b, r))
            off += b
        cost = sum(c.probes * n * (1.0 + n / 2 ** c.bits) + 2 ** c.bits
                   for c in chunks if c.radius >= 0)
        if cost < best_cost:
            best, best_cost = chunks, cost
    assert best is not None
    return best


def _patterns(bits: int, radius: int) -> np.ndarray:
    out = [0]
    for k in range(1, radius + 1):
        for combo in itertools.combinations(range(bits), k):
            v = 0
            for b in combo:
                v |= 1 << b
            out.append(v)
    return np.asarray(out, dtype=np.int64)


def hamming_pairs(hashes: np.ndarray, threshold: int, *, progress: bool = False) -> np.ndarray:
    """All pairs (i, j), i < j, with popcount(hashes[i] ^ hashes[j]) <= threshold.

    `hashes` is a 1-D array of 64-bit hashes (uint64 or int64). Returns an
    int64 array of shape (k, 2), sorted, without repeats.
    """
    h = np.ascontiguousarray(np.asarray(hashes).astype(np.uint64, copy=False))
    n = len(h)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    chunks = plan(n, threshold)
    log.debug("hamming search n=%d T=%d chunks=%s", n, threshold, chunks)
    found: list[np.ndarray] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(c.probes for c in chunks), desc="hash search", unit="probe")
    for c in chunks:
        if c.radius < 0:
            continue
        vals = ((h >> np.uint64(c.offset)) & np.uint64((1 << c.bits) - 1)).astype(np.uint32)
        order = np.argsort(vals, kind="stable")
        counts = np.bincount(vals, minlength=1 << c.bits)
        starts = np.cumsum(counts) - counts
        occupied = (counts > 0).astype(np.uint8)   # a small table: gathers stay in cache
        # A pair whose chunks differ by pattern p != 0 is found from the side whose bit at p's
        # highest set bit is 0 only: per bit, the queries with that bit clear (half the work).
        clear = {b: np.flatnonzero(((vals >> np.uint32(b)) & np.uint32(1)) == 0)
                 for b in range(c.bits)} if c.radius > 0 else {}
        for p in _patterns(c.bits, c.radius):
            p = int(p)
            if p == 0:
                qidx, qvals = None, vals
            else:
                qidx = clear[p.bit_length() - 1]
                qvals = vals[qidx]
            for lo in range(0, len(qvals), _BLOCK):
                q = qvals[lo:lo + _BLOCK] ^ np.uint32(p)
                hit = np.flatnonzero(occupied[q])
                if hit.size == 0:
                    continue
                qh = q[hit]
                cnt_hit = counts[qh]
                src = hit + lo if qidx is None else qidx[hit + lo]
                i = np.repeat(src, cnt_hit)
                # position inside each bucket: 0..cnt-1
                first = np.repeat(np.cumsum(cnt_hit) - cnt_hit, cnt_hit)
                ramp = np.arange(i.size, dtype=np.int64) - first
                j = order[np.repeat(starts[qh], cnt_hit) + ramp]
                if p == 0:
                    keep = i < j
                    i, j = i[keep], j[keep]
                else:
                    i, j = np.minimum(i, j), np.maximum(i, j)
                d = np.bitwise_count(h[i] ^ h[j])
                keep = d <= threshold
                if keep.any():
                    found.append(np.stack([i[keep], j[keep]], axis=1).astype(np.int64))
            if bar is not None:
                bar.update(1)
        del clear
    if bar is not None:
        bar.close()
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(found)
    key = np.unique(pairs[:, 0] * n + pairs[:, 1])
    return np.stack([key // n, key % n], axis=1)


def hamming_pairs_naive(hashes: np.ndarray, threshold: int) -> np.ndarray:
    """Reference: all-pairs comparison, O(n^2) (for tests and the benchmark baseline)."""
    h = np.asarray(hashes).astype(np.uint64, copy=False)
    out = []
    for i in range(len(h) - 1):
        d = np.bitwise_count(h[i + 1:] ^ h[i])
        j = np.flatnonzero(d <= threshold) + i + 1
        if j.size:
            out.append(np.stack([np.full(j.size, i), j], axis=1))
    return np.concatenate(out).astype(np.int64) if out else np.empty((0, 2), dtype=np.int64)


def connected_groups(n: int, pairs: np.ndarray) -> np.ndarray:
    """Union-find over `n` items joined by `pairs`: each item's label is the smallest index in its group."""
    parent = np.arange(n, dtype=np.int64)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if pairs.size == 0:
        return parent
    a, b = pairs[:, 0], pairs[:, 1]
    while True:
        ra, rb = parent[a], parent[b]
        differ = ra != rb
        if not differ.any():
            return parent
        lo = np.minimum(ra[differ], rb[differ])
        np.minimum.at(parent, ra[differ], lo)   # union: hook the larger root under the smaller
        np.minimum.at(parent, rb[differ], lo)
        while True:                             # path compression by pointer jumping
            nxt = parent[parent]
            if np.array_equal(nxt, parent):
                break
            parent = nxt


# ------------------------------------------------------------------ the pairs dedupe groups

def exact_pairs(sigs: list[str | None], crop_index: list[int], tol: int) -> list[tuple[int, int]]:
    """Pairs of rows whose pixel signatures match (same size and crop index, thumbnails within tol)."""
    from .hashing import parse_signature

    buckets: dict[tuple, list[int]] = {}
    thumbs: dict[int, np.ndarray] = {}
    for i, s in enumerate(sigs):
        if s is None:
            continue
        w, h, t = parse_signature(s)
        thumbs[i] = t.astype(np.int16)
        buckets.setdefault((w, h, crop_index[i]), []).append(i)
    pairs = []
    for rows in buckets.values():
        if len(rows) < 2:
            continue
        idx = np.asarray(rows)
        mat = np.stack([thumbs[i] for i in rows])
        mean = mat.mean(axis=1)
        order = np.argsort(mean, kind="stable")
        idx, mat, mean = idx[order], mat[order], mean[order]
        for k in range(1, len(idx)):       # rows within tol in every cell are within tol in mean
            close = mean[k:] - mean[:-k] <= tol
            if not close.any():
                break
            a = np.flatnonzero(close)
            ok = np.abs(mat[a + k] - mat[a]).max(axis=1) <= tol
            pairs.extend(zip(idx[a[ok]].tolist(), idx[a[ok] + k].tolist()))
    return pairs


def _fine_dist(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def near_pairs(h: list[str | None], hm: list[str | None], fine: list[str | None],
               fine_m: list[str | None], opts) -> list[tuple[int, int, int, bool]]:
    """(i, j, distance, mirrored) for rows within the thresholds of `opts` (a `DedupeOptions`: either
    copy mirrored)."""
    rows = [i for i, v in enumerate(h) if v is not None]
    if len(rows) < 2:
        return []
    own = np.asarray(rows, dtype=np.int64)
    base = np.asarray([int(h[i], 16) for i in rows], dtype=np.uint64)
    if opts.mirror:
        mir = np.asarray([int(hm[i], 16) for i in rows], dtype=np.uint64)
        allh, owner = np.concatenate([base, mir]), np.concatenate([own, own])
        is_m = np.concatenate([np.zeros(len(rows), bool), np.ones(len(rows), bool)])
    else:
        allh, owner, is_m = base, own, np.zeros(len(rows), bool)
    cand = hamming_pairs(allh, opts.threshold)
    out = {}
    for a, b in cand.tolist():
        i, j = int(owner[a]), int(owner[b])
        if i == j or (is_m[a] and is_m[b]):
            continue
        i, j = min(i, j), max(i, j)
        mirrored = bool(is_m[a] or is_m[b])
        d = (int(allh[a]) ^ int(allh[b])).bit_count()
        if opts.fine_threshold >= 0:
            fd = _fine_dist(fine[i], fine_m[j] if mirrored else fine[j])
            if fd > opts.fine_threshold:
                continue
        if (i, j) not in out or d < out[(i, j)][0]:
            out[(i, j)] = (d, mirrored)
    return [(i, j, d, m) for (i, j), (d, m) in sorted(out.items())]
