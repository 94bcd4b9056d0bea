"""Local process pool vs Ray Data on the same folder, stage by stage, and what 1,000,000 photos cost.

    .venv/bin/python benchmarks/engines.py [--folder ../shared/data/web] [--workers 2] [--n-workers 2 16 64]

Runs the per-file stages (scan, repair, score, dedupe) of the same folder twice in this process,
once per engine (`curate.engine.using`), into fresh work folders, and prints per-stage img/s and
the ratio ray/local. Detect and embed (the shared TFLite detector and its backbone: a Ray actor pool
holding the model) are timed the same way on a sample of the folder. The two manifests of each are
compared column by column (they must be equal).

The estimate for 1,000,000 photos: the per-photo cost measured here with the local engine (wall
seconds x workers / photos, i.e. CPU-seconds per photo, detect and embed included) divided over N
workers.
It treats the driver's part (grouping, manifest writes: linear in the photos) as if it were spread
too, so it is a lower bound; it assumes this folder's photos (a web scrape) and workers that read
them as fast as here (a shared file system that keeps up). The local engine runs first, so the
Ray run finds the files in the page cache: a small advantage to Ray.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_FOLDER = REPO.parent / "shared" / "data" / "web"
DEFAULT_DETECTOR = REPO.parent / "shared" / "assets" / "yolov8n_int8.tflite"
STAGES = ("scan", "repair", "score", "dedupe")


def run_stages(folder: Path, work: Path, engine: str, workers: int) -> dict[str, float]:
    """Seconds per stage; detect is skipped (score and dedupe then measure whole photos)."""
    from curate.dedupe import DedupeOptions, dedupe_manifest
    from curate.engine import using
    from curate.repair import repair_manifest
    from curate.scan import scan_folder
    from curate.score import ScoreOptions, score_manifest

    manifest = work / "manifest.parquet"
    times = {}
    with using(engine):
        for name, call in (
                ("scan", lambda: scan_folder(folder, manifest, workers=workers, progress=False)),
                ("repair", lambda: repair_manifest(manifest, workers=workers, progress=False)),
                ("score", lambda: score_manifest(manifest, ScoreOptions(workers=workers), progress=False)),
                ("dedupe", lambda: dedupe_manifest(manifest, DedupeOptions(workers=workers), progress=False))):
            t0 = time.perf_counter()
            call()
            times[name] = time.perf_counter() - t0
    return times


def model_stages(folder: Path, detector: Path, n: int, tmp: Path, engine: str) -> dict[str, float] | None:
    """Seconds per photo of detect and of embed (tflite backend) on the first `n` photos of `folder`."""
    if not detector.exists():
        return None
    from curate.detect import DetectOptions, detect_manifest
    from curate.embed import EmbedOptions, embed_manifest
    from curate.engine import using
    from curate.scan import scan_folder

    sample = tmp / "model-sample"
    if not sample.exists():
        sample.mkdir()
        files = [p for p in sorted(folder.rglob("*")) if p.suffix.lower() in (".jpg", ".jpeg", ".png")][:n]
        for i, f in enumerate(files):
            shutil.copy(f, sample / f"{i:05d}{f.suffix.lower()}")
    count = sum(1 for _ in sample.iterdir())
    manifest = tmp / f"model-{engine}" / "manifest.parquet"
    scan_folder(sample, manifest, workers=1, progress=False)
    out = {}
    with using(engine):
        for name, call in (
                ("detect", lambda: detect_manifest(manifest, DetectOptions(weights=str(detector)), progress=False)),
                ("embed", lambda: embed_manifest(manifest, EmbedOptions(backend="tflite", weights=str(detector)),
                                                 progress=False))):
            t0 = time.perf_counter()
            call()
            out[name] = (time.perf_counter() - t0) / count
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    ap.add_argument("--workers", type=int, default=2, help="processes / Ray CPUs on this machine")
    ap.add_argument("--detector", type=Path, default=DEFAULT_DETECTOR)
    ap.add_argument("--detect-sample", type=int, default=60, help="photos detect and embed are timed on")
    ap.add_argument("--n-workers", type=int, nargs="+", default=[2, 16, 64])
    a = ap.parse_args(argv)
    if not a.folder.is_dir():
        print(f"{a.folder}: not a folder", file=sys.stderr)
        return 2
    from curate.ray_engine import connect

    from manifests import read_manifest

    n = sum(1 for p in a.folder.rglob("*") if p.is_file())
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        t0 = time.perf_counter()
        connect(None, a.workers)                      # Ray's start-up, reported on its own
        ray_start = time.perf_counter() - t0
        results = {e: run_stages(a.folder, tmp / e, e, a.workers) for e in ("local", "ray")}
        la, ra = (read_manifest(tmp / e / "manifest.parquet").df.sort_values("sample_id").reset_index(drop=True)
                  for e in ("local", "ray"))
        same = list(la.columns) == list(ra.columns) and all(la[c].equals(ra[c]) for c in la.columns)
        models = {e: model_stages(a.folder, a.detector, a.detect_sample, tmp, e) for e in ("local", "ray")}
        if models["local"] is not None:
            lm, rm = (read_manifest(tmp / f"model-{e}" / "manifest.parquet").df.sort_values("sample_id")
                      .reset_index(drop=True) for e in ("local", "ray"))
            same = same and list(lm.columns) == list(rm.columns) and all(lm[c].equals(rm[c]) for c in lm.columns)

    print(f"{a.folder}: {n} files, {a.workers} workers on this machine; Ray start-up {ray_start:.1f} s (not in the "
          f"stage times)")
    print(f"{'stage':<8} {'local img/s':>12} {'ray img/s':>10} {'ray/local':>10}")
    for s in STAGES:
        lo, ra_ = n / results["local"][s], n / results["ray"][s]
        print(f"{s:<8} {lo:12.1f} {ra_:10.1f} {ra_ / lo:10.2f}")
    tl, tr = sum(results["local"].values()), sum(results["ray"].values())
    print(f"{'all four':<8} {n / tl:12.1f} {n / tr:10.1f} {tl / tr:10.2f}")
    if models["local"] is not None:
        for s in ("detect", "embed"):
            lo, ra_ = 1 / models["local"][s], 1 / models["ray"][s]
            print(f"{s:<8} {lo:12.1f} {ra_:10.1f} {ra_ / lo:10.2f}   (TFLite, {a.detect_sample} photos; ray: an actor pool)")
    print(f"manifests identical column by column: {same}")

    # 1,000,000 photos: CPU-seconds per photo from the local run, spread over N workers
    cpu_per_photo = sum(results["local"].values()) * a.workers / n
    if models["local"] is not None:
        cpu_per_photo += sum(models["local"].values()) * a.workers    # they used the machine's cores (TFLite threads)
    print(f"\nestimate for 1,000,000 photos (cost per photo measured here: {cpu_per_photo * 1000:.1f} CPU-ms):")
    for w in a.n_workers:
        hours = 1_000_000 * cpu_per_photo / w / 3600
        print(f"  {w:4d} workers: {hours:6.1f} h")
    print("  (detect and embed included: on Ray they run in an actor pool, one actor per 2 CPUs or per GPU)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
