"""Per-stage speed of curation on a real folder, beside imagededup's and cleanvision's, in one run.

    .venv/bin/python benchmarks/curate_speed.py [--folder ../shared/data/web] [--detect] [--repeat 5]

Ours: `curate scan`, `repair`, `score` and `dedupe` as whole CLI processes (imports included),
one after the other on a fresh work folder, img/s each and together; with `--detect`, `curate
detect` with the shared TFLite detector too. Peers, timed inside their own process with their
imports excluded: imagededup's PHash `encode_images` + `find_duplicates`, and cleanvision's
`Imagelab.find_issues()` (optional: `pip install 'motocurate[bench]'`; skipped when missing).
Prints the ratio of our four stages to imagededup's hashing (issue 15's yardstick), and the floor
under it: the same four CLIs on a folder holding one photo of the folder (process start, imports,
manifest reads and writes, the worker pool), which no per-photo speed-up can remove.
With `--repeat N`, our four stages and imagededup run N times, one after the other in turn, and
the ratio is given per round and as the median (this machine's speed drifts by tens of percent
within minutes, so one round says little).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = REPO.parent / "shared" / "data" / "web"
DEFAULT_DETECTOR = REPO.parent / "shared" / "assets" / "yolov8n_int8.tflite"
FOUR = ("scan", "repair", "score", "dedupe")
CURATE = [sys.executable, "-c", "from curate.cli import main; main()"]

PEER = r'''
import json, sys, time, warnings
warnings.filterwarnings("ignore")
which, folder = sys.argv[1], sys.argv[2]
if which == "imagededup":
    from imagededup.methods import PHash
    t0 = time.perf_counter()
    ph = PHash(verbose=False)
    enc = ph.encode_images(image_dir=folder, recursive=True)
    ph.find_duplicates(encoding_map=enc)
    print(json.dumps({"seconds": time.perf_counter() - t0, "images": len(enc)}))
else:
    from cleanvision import Imagelab
    t0 = time.perf_counter()
    lab = Imagelab(data_path=folder)
    lab.find_issues(verbose=False)
    print(json.dumps({"seconds": time.perf_counter() - t0, "images": len(lab.issues)}))
'''


def _env() -> dict:
    return {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0", "FIFTYONE_DO_NOT_TRACK": "true",
            "MPLBACKEND": "Agg"}


def ours(folder: Path, work: Path, detect: bool, detector: Path) -> dict[str, float]:
    manifest = work / "manifest.parquet"
    steps = [("scan", ["scan", str(folder), "-o", str(manifest)]),
             ("repair", ["repair", "--manifest", str(manifest)])]
    if detect:
        steps.append(("detect", ["detect", "--manifest", str(manifest), "--weights", str(detector)]))
    steps += [("score", ["score", "--manifest", str(manifest)]), ("dedupe", ["dedupe", "--manifest", str(manifest)])]
    times = {}
    for name, args in steps:
        t0 = time.perf_counter()
        subprocess.run([*CURATE, *args, "--no-progress"], check=True, capture_output=True, env=_env())
        times[name] = time.perf_counter() - t0
    return times


def peer(which: str, folder: Path) -> dict | None:
    p = subprocess.run([sys.executable, "-c", PEER, which, str(folder)], capture_output=True, text=True, env=_env())
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        print(f"{which}: not run ({last[:160]}); pip install 'motocurate[bench]'")
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    ap.add_argument("--detect", action="store_true", help="time detect too (TFLite, slow)")
    ap.add_argument("--detector", type=Path, default=DEFAULT_DETECTOR)
    ap.add_argument("--repeat", type=int, default=1, help="rounds of ours and imagededup, in turn (median)")
    a = ap.parse_args(argv)
    if a.repeat < 1:
        print(f"--repeat must be at least 1 (got {a.repeat})", file=sys.stderr)
        return 2
    if not a.folder.is_dir():
        print(f"{a.folder}: not a folder", file=sys.stderr)
        return 2
    n = sum(1 for p in a.folder.rglob("*") if p.is_file())
    rounds = []                       # (our four stages, imagededup) seconds per round
    with tempfile.TemporaryDirectory() as td:
        t = ours(a.folder, Path(td) / "work", a.detect, a.detector)
        dd = peer("imagededup", a.folder)
        rounds.append((sum(t[s] for s in FOUR), dd))
        for k in range(1, a.repeat):
            again = ours(a.folder, Path(td) / f"work{k}", False, a.detector)
            rounds.append((sum(again[s] for s in FOUR), peer("imagededup", a.folder)))
        one = Path(td) / "one"
        one.mkdir()
        first = min(p for p in a.folder.rglob("*") if p.is_file())
        shutil.copy2(first, one / first.name)
        floor = ours(one, Path(td) / "work-one", False, a.detector)
    cv = peer("cleanvision", a.folder)
    print(f"{a.folder}: {n} files, {os.cpu_count()} cores")
    print(f"{'':34s} {'seconds':>8} {'img/s':>8}")
    for name, s in t.items():
        print(f"  curate {name:<26s} {s:8.2f} {n / s:8.1f}")
    four = sum(t[s] for s in FOUR)
    print(f"  {'curate scan+repair+score+dedupe':<33s} {four:8.2f} {n / four:8.1f}")
    for label, r in (("imagededup PHash encode+find", dd), ("cleanvision find_issues", cv)):
        if r:
            print(f"  {label:<33s} {r['seconds']:8.2f} {r['images'] / r['seconds']:8.1f}")
    base = sum(floor[s] for s in FOUR)
    print(f"  {'the four on one photo (the floor)':<33s} {base:8.2f}   " +
          " ".join(f"{k} {v:.2f}" for k, v in floor.items()))
    if dd:
        print(f"ratio: our four stages / imagededup hashing = {four / dd['seconds']:.1f}x (issue 15 asks <= 2.0x); "
              f"the floor alone {base / dd['seconds']:.1f}x")
    if dd and a.repeat > 1 and all(r for _, r in rounds):
        peers = [r["seconds"] for _, r in rounds]
        ratios = [f / p for (f, _), p in zip(rounds, peers)]
        print(f"rounds: ours {' '.join(f'{f:.2f}' for f, _ in rounds)} s; "
              f"imagededup {' '.join(f'{p:.2f}' for p in peers)} s")
        print(f"ratio per round: {' '.join(f'{x:.1f}x' for x in ratios)}; median {statistics.median(ratios):.1f}x")
    if cv:
        print(f"ratio: our four stages / cleanvision find_issues = {four / cv['seconds']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
