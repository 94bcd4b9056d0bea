"""`curate embed` with the TFLite backbone at two square sizes, side by side in one run.

    .venv/bin/python benchmarks/embed_speed.py --manifest WORK/manifest.parquet [--sizes 640 384] [--rounds 2]

WORK is a `curate run` work folder (its crops are what gets embedded); the manifest is copied with
its cache for every run, so it is never touched. Each round runs every size once, in turn, as a
whole CLI process with `--force`; prints seconds and img/s per run and the best of each size
against the first size's best.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DETECTOR = REPO.parent / "shared" / "assets" / "yolov8n_int8.tflite"
CURATE = [sys.executable, "-c", "from curate.cli import main; main()"]


def one(manifest: Path, size: int, weights: Path) -> tuple[float, int]:
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy2(manifest, work / manifest.name)
        if (manifest.parent / "cache").is_dir():
            shutil.copytree(manifest.parent / "cache", work / "cache")
        env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0", "FIFTYONE_DO_NOT_TRACK": "true"}
        t0 = time.perf_counter()
        subprocess.run([*CURATE, "embed", "--manifest", str(work / manifest.name), "--backend", "tflite",
                        "--weights", str(weights), "--size", str(size), "--force", "--no-progress"],
                       check=True, capture_output=True, env=env)
        return time.perf_counter() - t0, pq.read_metadata(work / manifest.name).num_rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--weights", type=Path, default=DEFAULT_DETECTOR)
    ap.add_argument("--sizes", type=int, nargs="+", default=[640, 384])
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args(argv)
    if not a.manifest.is_file() or not a.weights.is_file():
        print(f"need a manifest and the TFLite weights: {a.manifest}, {a.weights}")
        return 2
    best: dict[int, float] = {}
    for r in range(a.rounds):
        for size in a.sizes:
            sec, n = one(a.manifest, size, a.weights)
            best[size] = min(best.get(size, sec), sec)
            print(f"round {r + 1}  size {size:4d}  {sec:6.2f} s  {n / sec:6.1f} img/s  ({n} rows, {os.cpu_count()} cores)")
    base = best[a.sizes[0]]
    for size in a.sizes:
        print(f"best at {size:4d}: {best[size]:6.2f} s  = {base / best[size]:.2f}x the speed at {a.sizes[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
