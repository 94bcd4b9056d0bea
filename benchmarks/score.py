"""Images per second of `curate score` (and `curate dedupe` hashing) over the shared photos.

    .venv/bin/python benchmarks/score.py [--data ../shared/data] [--workers 2]

Builds a manifest of the Caltech and CCTV photos in a temporary folder (no
detection: the whole image is measured), runs the stages and prints rates.
Baseline in the same run: the same stage with one worker.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_manifest(files: list[Path], root: Path, out: Path) -> Path:
    import pandas as pd
    from PIL import Image

    from manifests import file_sha256, sample_id, write_manifest

    rows = []
    for p in files:
        rel = p.relative_to(root).as_posix()
        sha = file_sha256(p)
        with Image.open(p) as im:
            w, h = im.size
        rows.append({"sample_id": sample_id(sha, rel, 0), "path": rel, "crop_index": 0, "status": "ok",
                     "sha256": sha, "width": w, "height": h})
    df = pd.DataFrame(rows)
    for c in ("crop_index", "width", "height"):
        df[c] = df[c].astype("Int32")
    write_manifest(df, out, stage="scan", params={}, root=str(root))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    from curate.dedupe import DedupeOptions, dedupe_manifest
    from curate.score import ScoreOptions, score_manifest

    root = args.data / "motorbikes"
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        print(f"no photos under {root}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        for workers in sorted({1, args.workers}, reverse=True):
            mp = build_manifest(files, root, Path(tmp) / f"w{workers}" / "manifest.parquet")
            t0 = time.perf_counter()
            score_manifest(mp, ScoreOptions(workers=workers, force=True), progress=False)
            t1 = time.perf_counter()
            dedupe_manifest(mp, DedupeOptions(workers=workers, force=True), progress=False)
            t2 = time.perf_counter()
            print(f"workers={workers}: score {len(files) / (t1 - t0):.1f} img/s ({t1 - t0:.1f} s for "
                  f"{len(files)} photos), dedupe {len(files) / (t2 - t1):.1f} img/s ({t2 - t1:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
