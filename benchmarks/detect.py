"""Benchmark `curate detect`: one `predict` call per file vs the batched, streamed path, in one run.

Over a subset of the shared photos (the first N Caltech + every k-th CCTV frame,
sorted by name; sizes printed), it times, after a warm-up:

  per-file   the baseline: `model.predict(path)` once per file (ultralytics reads the file)
  streamed   our inference path: decode in a thread pool ahead of the detector,
             lists of `--batch` arrays per `predict` call (`curate.detect` internals)
  stage      the whole `detect_manifest` (inference + analysis + crop PNGs + manifest writes)

with the real TFLite detector (`../shared/assets/yolov8n_int8.tflite`, one image per
call inside LiteRT) and, with `--random-init`, a random-init `yolo11n.yaml` at
imgsz 640 (the realistic compute of the default `yolo11n.pt`). Prints images/second.

    .venv/bin/python benchmarks/detect.py
    .venv/bin/python benchmarks/detect.py --random-init --device cuda:0 --batch 64
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="bench-yolo-"))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOTO_SHARED", REPO.parent / "shared"))
DATA = Path(os.environ.get("MOTO_TEST_DATA", SHARED / "data")) / "motorbikes"
TFLITE = SHARED / "assets" / "yolov8n_int8.tflite"


def pick_files(n_caltech: int, cctv_every: int) -> list[Path]:
    cal = sorted((DATA / "caltech101").glob("*.jpg"))[:n_caltech]
    cctv = sorted((DATA / "cctv").glob("*.jpg"))[::cctv_every] if cctv_every else []
    return cal + cctv


def per_file(det, files, imgsz, conf) -> float:
    t = time.perf_counter()
    for f in files:
        det.model.predict(str(f), imgsz=imgsz, conf=conf, device=det.device, verbose=False)
    return time.perf_counter() - t


def streamed(det, files, imgsz, conf, batch, workers) -> float:
    from curate.detect_stream import Job, stream_detections

    jobs = [Job(pos=i, sample_id=str(i), path=f, sha256="", decoded_from="") for i, f in enumerate(files)]
    t = time.perf_counter()
    for d in stream_detections(det, jobs, imgsz=imgsz, conf=conf, batch=batch, workers=workers):
        if d.status is not None:
            raise RuntimeError(f"{d.job.path}: {d.error}")
    return time.perf_counter() - t


def stage(det, files, imgsz, conf, batch, workers) -> float:
    import pandas as pd

    from curate.detect import DetectOptions, detect_manifest
    from manifests import file_sha256, sample_id, write_manifest

    with tempfile.TemporaryDirectory(prefix="bench-detect-") as tmp:
        rows = []
        for f in files:
            rel = f"{f.parent.name}/{f.name}"
            sha = file_sha256(f)
            rows.append({"sample_id": sample_id(sha, rel, 0), "path": rel, "crop_index": 0,
                         "status": "ok", "sha256": sha})
        mp = Path(tmp) / "manifest.parquet"
        write_manifest(pd.DataFrame(rows), mp, stage="scan", root=str(DATA))
        opts = DetectOptions(weights=str(det.path), device=det.device, imgsz=imgsz, conf=conf,
                             batch=batch, workers=workers)
        t = time.perf_counter()
        detect_manifest(mp, opts, progress=False, detector=det)
        return time.perf_counter() - t


def run(label, det, files, args, imgsz) -> None:
    n = len(files)
    print(f"\n{label}: {det.name} on {det.device}, imgsz {imgsz}, batch {args.batch}, "
          f"{args.workers} decode thread(s), best of {args.reps} interleaved rounds")
    best = {"per-file": [], "streamed": [], "stage": []}
    for _ in range(args.reps):  # interleaved, so load from other processes hits all three alike
        best["per-file"].append(per_file(det, files, imgsz, args.conf))
        best["streamed"].append(streamed(det, files, imgsz, args.conf, args.batch, args.workers))
        best["stage"].append(stage(det, files, imgsz, args.conf, args.batch, args.workers))
    base = min(best["per-file"])
    for name, what in (("per-file", "one predict(path) per file: baseline"),
                       ("streamed", "decode pool + batched predict"),
                       ("stage", "whole detect_manifest: + crops, manifest writes")):
        t = min(best[name])
        print(f"  {name:9s} {n / t:7.2f} img/s  ({t:6.2f} s, x{base / t:4.2f})  {what}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-caltech", type=int, default=64, help="first N Caltech photos (~260x160)")
    ap.add_argument("--cctv-every", type=int, default=3, help="every k-th CCTV frame (1280x720/1920x1080)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--reps", type=int, default=2, help="rounds; the best time of each path is kept")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--random-init", action="store_true", help="also yolo11n.yaml (random init) at imgsz 640")
    ap.add_argument("--no-tflite", action="store_true")
    args = ap.parse_args()

    import torch

    from curate.detector import load_detector

    if args.threads:
        torch.set_num_threads(args.threads)
    files = pick_files(args.n_caltech, args.cctv_every)
    if not files:
        raise SystemExit(f"no photos under {DATA} (set MOTO_TEST_DATA)")
    n_cctv = sum(f.parent.name == "cctv" for f in files)
    print(f"{len(files)} photos: {len(files) - n_cctv} Caltech + {n_cctv} CCTV; torch threads "
          f"{torch.get_num_threads()}, CPUs {os.cpu_count()}, CUDA {torch.cuda.is_available()}")
    if not args.no_tflite:
        if TFLITE.exists():
            run("TFLite int8", load_detector(TFLITE, args.device), files, args, 640)
        else:
            print(f"skipping TFLite: {TFLITE} not found")
    if args.random_init:
        run("random-init", load_detector("yolo11n.yaml", args.device, imgsz=640), files, args, 640)


if __name__ == "__main__":
    main()
