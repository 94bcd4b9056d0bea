"""Images per second of `preprocess` over the shared photos: 1 worker (baseline) vs more.

Builds a manifest for every photo under the shared data folder (default
../shared/data/motorbikes: 798 Caltech side views ~260x160 and 46 CCTV frames
up to 1920x1080, 844 files), then packs it once per worker count into a temp
folder and checks that the packs are byte-identical. It also times the two
things a trainer does instead: checking an up-to-date pack (`ensure_pack`) and
reading the whole pack into memory, versus decoding the JPEGs again.

    .venv/bin/python benchmarks/preprocess.py
    .venv/bin/python benchmarks/preprocess.py --workers 1,2,4 --size 64 --mode crop
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# This file is named like the package it measures: keep its folder off the import path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import pandas as pd  # noqa: E402

from manifests import file_sha256, sample_id, write_manifest  # noqa: E402
from preprocess.pack import PrepOptions, ensure_pack, load_pack, preprocess_manifest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("MOTO_TEST_DATA", REPO.parent / "shared" / "data")) / "motorbikes"
EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def build_manifest(root: Path, path: Path) -> int:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EXTS)
    rows = []
    for p in files:
        rel = p.relative_to(root).as_posix()
        sha = file_sha256(p)
        rows.append({"sample_id": sample_id(sha, rel), "path": rel, "crop_index": 0, "status": "ok",
                     "sha256": sha})
    write_manifest(pd.DataFrame(rows), path, stage="scan", root=str(root.resolve()))
    return len(files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of photos (recursive)")
    ap.add_argument("--workers", default="1,2",
                    help="comma-separated worker counts; the first is the baseline")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--mode", default="pad")
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"photos not found at {args.data} (pass --data or set MOTO_TEST_DATA)")
    counts = [int(w) for w in args.workers.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp:
        tmp = Path(tmp)
        manifest = tmp / "m.parquet"
        n = build_manifest(args.data, manifest)
        print(f"{n} photos under {args.data}; size {args.size}, mode {args.mode}; "
              f"{os.cpu_count()} CPU(s) visible (shared machine: figures vary with load)")
        results, packs = [], []
        for w in counts:
            opts = PrepOptions(size=args.size, mode=args.mode, workers=w)
            t0 = time.perf_counter()
            info = preprocess_manifest(manifest, opts, tmp / f"w{w}", progress=False)
            dt = time.perf_counter() - t0
            results.append((w, dt))
            packs.append(info.npy_path.read_bytes())
            print(f"  workers={w}: {dt:7.2f} s  {n / dt:7.1f} images/s  "
                  f"(packed {info.counts['packed']}, too_small {info.counts['too_small']}, "
                  f"error {info.counts['error']})")
        base = results[0][1]
        for w, dt in results[1:]:
            print(f"  speed-up workers={w} vs workers={results[0][0]}: {base / dt:.2f}x")
        print(f"  packs byte-identical across worker counts: {all(p == packs[0] for p in packs)}")

        opts = PrepOptions(size=args.size, mode=args.mode, workers=counts[0])
        t0 = time.perf_counter()
        info = ensure_pack(manifest, opts, tmp / f"w{counts[0]}", progress=False)
        dt_check = time.perf_counter() - t0
        assert not info.rebuilt
        t0 = time.perf_counter()
        arr, _ = load_pack(info.npy_path, mmap=False)
        dt_load = time.perf_counter() - t0
        print(f"  ensure_pack on the up-to-date pack: {dt_check:.2f} s (manifest read + stat + fingerprint)")
        print(f"  load_pack into memory: {dt_load:.3f} s for {arr.nbytes / 2**20:.0f} MiB "
              f"({info.n / max(dt_load, 1e-9):,.0f} images/s) vs decoding the photos again at "
              f"{n / base:.0f} images/s per core")


if __name__ == "__main__":
    main()
