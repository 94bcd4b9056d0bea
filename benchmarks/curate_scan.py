"""Images per second of `curate scan` + `curate repair` over the shared photos: 1 worker (baseline) vs more.

For each worker count it scans the folder (default ../shared/data/motorbikes:
798 Caltech side views and 46 CCTV frames, 844 files) into a fresh manifest in
a temp folder, repairs it, then rescans the unchanged folder (the resume path),
and checks that every worker count gives the same rows. The machine may be
shared: run it more than once and read the figures relative to the baseline.

    .venv/bin/python benchmarks/curate_scan.py
    .venv/bin/python benchmarks/curate_scan.py --workers 1,2,4 --data /path/to/photos
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# keep this folder off the import path (benchmarks are named like the packages they measure)
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from curate.repair import repair_manifest  # noqa: E402
from curate.scan import scan_folder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("MOTO_TEST_DATA", REPO.parent / "shared" / "data")) / "motorbikes"


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of photos (recursive)")
    ap.add_argument("--workers", default="1,2",
                    help="comma-separated worker counts; the first is the baseline")
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"photos not found at {args.data} (pass --data or set MOTO_TEST_DATA)")
    counts = [int(w) for w in args.workers.split(",")]
    print(f"data: {args.data}   cores available: {len(os.sched_getaffinity(0))}")
    print(f"{'workers':>7} {'files':>6} {'scan s':>7} {'repair s':>8} {'scan+repair img/s':>18} "
          f"{'rescan s':>8} {'speed-up':>8}")
    baseline = None
    reference = None
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        for w in counts:
            mpath = Path(tmp) / f"w{w}" / "manifest.parquet"
            m, t_scan = timed(scan_folder, args.data, mpath, workers=w, progress=False)
            m, t_repair = timed(repair_manifest, mpath, workers=w, progress=False)
            _, t_rescan = timed(scan_folder, args.data, mpath, workers=w, progress=False)
            n = len(m.df)
            rate = n / (t_scan + t_repair)
            baseline = baseline or rate
            rows = m.df[["path", "status", "sha256", "width", "height", "repair_action"]]
            rows = rows.sort_values("path").reset_index(drop=True)
            if reference is None:
                reference = rows
            elif not rows.equals(reference):
                raise SystemExit(f"workers={w} gave different rows than workers={counts[0]}")
            actions = m.df["repair_action"].value_counts().to_dict()
            print(f"{w:>7} {n:>6} {t_scan:>7.2f} {t_repair:>8.2f} {rate:>18.1f} {t_rescan:>8.2f} "
                  f"{rate / baseline:>7.2f}x   statuses={m.df['status'].value_counts().to_dict()} "
                  f"repairs={actions}")


if __name__ == "__main__":
    main()
