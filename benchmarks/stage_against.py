"""`curate detect` (or `embed`) of this working tree against the same command at an earlier git revision.

    .venv/bin/python benchmarks/stage_against.py [--rev 765d5e5] [--stage detect|embed|run]
        [--folder ../shared/data/web] [--detector ../shared/assets/yolov8n_int8.tflite] [--reps 2]
        [--tree-args "--far-look 0 --second-look-box 0"]

The folder is scanned and repaired once (and, for `--stage embed`, detected); then, in
interleaved rounds, the stage runs as a whole CLI process (imports and model loading included)
on a fresh copy of that manifest with the code of `--rev` (checked out into a temporary git
worktree) and with the working tree's code. The best time of each is printed as img/s with their
ratio, and the two manifests are compared: for detect every detection, status and crop box, and
the crops' pixels; for embed (`--backend tflite`) every vector; they must be equal (the agreement
figures then cannot have moved). `--stage run` times the whole `curate run FOLDER -o WORK` (every
stage, the report included) from an empty work folder instead, and compares the verdicts.
`--tree-args` adds options to the working tree's command only (to turn off what the old revision
did not do, so both do the same work). Issue 15 asks detect for 2x.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = REPO.parent / "shared" / "data" / "web"
DEFAULT_DETECTOR = REPO.parent / "shared" / "assets" / "yolov8n_int8.tflite"
DEFAULT_REV = "765d5e5"     # main before detect ran copies of the model side by side
# the CLI of the code under `root` (its folder first on sys.path; the check says it really was)
CLI = ("import sys, curate; root = sys.argv.pop(1); "
       "assert curate.__file__.startswith(root), curate.__file__; "
       "from curate.cli import main; main()")
SAME = {"detect": ("detect_status", "n_motorbikes", "detections", "crop_box", "detect_look"),
        "embed": ("embedding", "embed_error"),
        "run": ("keep", "reject_reason", "detections", "embedding", "dup_group")}


def _env(root: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(root), "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0",
            "YOLO_CONFIG_DIR": os.environ.get("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="bench-yolo-"))}


def curate(root: Path, *args: str) -> float:
    t0 = time.perf_counter()
    quiet = [] if args[0] == "run" else ["--no-progress"]      # `curate run` has no bars off a terminal
    subprocess.run([sys.executable, "-c", CLI, str(root), *args, *quiet], check=True, cwd=root,
                   env=_env(root), capture_output=True)
    return time.perf_counter() - t0


def compare(a: Path, b: Path, stage: str = "detect") -> list[str]:
    """What differs between two work folders after `stage` (empty: the same detections and crop
    pixels, or the same vectors)."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from manifests import read_manifest

    x = read_manifest(a / "manifest.parquet").df.set_index("sample_id").sort_index()
    y = read_manifest(b / "manifest.parquet").df.set_index("sample_id").sort_index()
    if not x.index.equals(y.index):
        return ["other rows"]
    def text(col):   # None, NaN and NA read the same (a column of lists holds any of them)
        return col.map(lambda v: "-" if v is None or (np.ndim(v) == 0 and pd.isna(v)) else str(v))

    out = [f"{c} ({(text(x[c]) != text(y[c])).sum()} rows)" for c in SAME[stage] if not text(x[c]).equals(text(y[c]))]
    if stage != "detect":
        return out
    crops = [(p, q) for p, q in zip(x["crop_path"], y["crop_path"]) if isinstance(p, str) or isinstance(q, str)]
    other = sum(not (isinstance(p, str) and isinstance(q, str)
                     and np.array_equal(np.asarray(Image.open(a / p)), np.asarray(Image.open(b / q))))
                for p, q in crops)
    return out + ([f"{other} crop(s) with other pixels"] if other else [])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", default=DEFAULT_REV)
    ap.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    ap.add_argument("--detector", type=Path, default=DEFAULT_DETECTOR)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--stage", choices=tuple(SAME), default="detect")
    ap.add_argument("--tree-args", default="", help="more options for this tree's command only")
    args = ap.parse_args(argv)
    extra = {"rev": [], "tree": shlex.split(args.tree_args)}
    if not args.folder.is_dir() or not args.detector.is_file():
        raise SystemExit(f"needs {args.folder} and {args.detector} (../shared)")
    with tempfile.TemporaryDirectory(prefix="bench-stage-against-") as tmp:
        tmp = Path(tmp)
        base, rev = tmp / "base", tmp / "rev"
        curate(REPO, "scan", str(args.folder), "-o", str(base / "manifest.parquet"))
        curate(REPO, "repair", "--manifest", str(base / "manifest.parquet"))
        weights = ("--weights", str(args.detector))
        if args.stage == "embed":
            curate(REPO, "detect", "--manifest", str(base / "manifest.parquet"), *weights)
        command = ("detect", *weights) if args.stage == "detect" else ("embed", "--backend", "tflite", *weights)
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(rev), args.rev],
                       check=True, capture_output=True)
        try:
            import pandas as pd

            n = len(pd.read_parquet(base / "manifest.parquet", columns=["sample_id"]))
            best = {"rev": float("inf"), "tree": float("inf")}
            for _ in range(args.reps):
                for which, root in (("rev", rev), ("tree", REPO)):
                    work = tmp / f"work-{which}"
                    shutil.rmtree(work, ignore_errors=True)
                    if args.stage == "run":
                        secs = curate(root, "run", str(args.folder), "-o", str(work), *weights, *extra[which])
                    else:
                        shutil.copytree(base, work)
                        secs = curate(root, command[0], "--manifest", str(work / "manifest.parquet"), *command[1:],
                                      *extra[which])
                    best[which] = min(best[which], secs)
            diff = compare(tmp / "work-rev", tmp / "work-tree", args.stage)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(rev)], capture_output=True)
    print(f"{n} photos of {args.folder}, {args.detector.name}, CPUs {os.cpu_count()}, best of {args.reps}, "
          f"whole `curate {args.stage}` processes" + (f"; this tree with {args.tree_args}" if args.tree_args else ""))
    print(f"  at {args.rev:10s} {n / best['rev']:6.2f} img/s  ({best['rev']:6.1f} s)")
    print(f"  this tree  {n / best['tree']:6.2f} img/s  ({best['tree']:6.1f} s)  x{best['rev'] / best['tree']:.2f}")
    what = {"detect": "detections, statuses, crop boxes and crop pixels", "embed": "embeddings",
            "run": "verdicts, reasons, detections, embeddings and duplicate groups"}[args.stage]
    print(f"  {what}: " + ("the same" if not diff else "DIFFER: " + ", ".join(diff)))
    return 0 if not diff else 1


if __name__ == "__main__":
    sys.exit(main())
