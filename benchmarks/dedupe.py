"""Time the Hamming grouping of `curate dedupe` on 1,000,000 random 64-bit hashes.

    .venv/bin/python benchmarks/dedupe.py [--n 1000000] [--threshold T] [--planted 2000]

Plants near-duplicate pairs at every distance 0..T, groups everything with
`curate.grouping` (multi-index hash search + union-find) and checks that every
planted pair was found and grouped. Baseline in the same run: the all-pairs
comparison (vectorised numpy, O(n^2)) timed on a subset and extrapolated.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate.dedupe import DedupeOptions  # noqa: E402
from curate.grouping import connected_groups, hamming_pairs, hamming_pairs_naive, plan  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--threshold", type=int, default=DedupeOptions().threshold)
    ap.add_argument("--planted", type=int, default=2000)
    ap.add_argument("--baseline-n", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    h = rng.integers(0, np.iinfo(np.uint64).max, size=args.n, dtype=np.uint64, endpoint=True)
    src = rng.choice(args.n, args.planted, replace=False)
    dst = rng.choice(np.setdiff1d(np.arange(args.n), src), args.planted, replace=False)
    for k, (i, j) in enumerate(zip(src, dst)):
        flip = np.uint64(0)
        for b in rng.choice(64, k % (args.threshold + 1), replace=False):
            flip |= np.uint64(1) << np.uint64(b)
        h[j] = h[i] ^ flip
    chunks = plan(args.n, args.threshold)
    print(f"n={args.n:,} threshold={args.threshold} planted={args.planted} "
          f"chunks={[(c.bits, c.radius) for c in chunks]}")
    c0, t0 = time.process_time(), time.perf_counter()
    pairs = hamming_pairs(h, args.threshold)
    t1 = time.perf_counter()
    labels = connected_groups(args.n, pairs)
    c2, t2 = time.process_time(), time.perf_counter()
    found = set(map(tuple, pairs.tolist()))
    missing = [(int(i), int(j)) for i, j in zip(src, dst) if (min(i, j), max(i, j)) not in found]
    grouped = bool(np.all(labels[src] == labels[dst]))
    print(f"multi-index search: {t1 - t0:.1f} s, union-find: {t2 - t1:.2f} s, total {t2 - t0:.1f} s wall "
          f"({c2 - c0:.1f} s CPU; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); "
          f"{len(pairs):,} pairs, {len(np.unique(labels)):,} groups")
    print(f"planted pairs found: {args.planted - len(missing)}/{args.planted}; all grouped: {grouped}")
    sub = h[:args.baseline_n]
    b0 = time.process_time()
    base = hamming_pairs_naive(sub, args.threshold)
    b1 = time.process_time()
    est = (b1 - b0) * (args.n / args.baseline_n) ** 2
    same = np.array_equal(base, hamming_pairs(sub, args.threshold))
    print(f"baseline all-pairs (vectorised numpy) on {args.baseline_n:,}: {b1 - b0:.1f} s CPU -> "
          f"extrapolated to n: {est:,.0f} s CPU ({est / (c2 - c0):,.0f}x the multi-index CPU time); "
          f"same pairs on the subset: {same}")
    return 0 if not missing and grouped and same else 1


if __name__ == "__main__":
    raise SystemExit(main())
