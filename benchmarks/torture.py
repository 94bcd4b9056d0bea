"""Kill `curate run` at random moments, rerun it, and check the result is what an uninterrupted run gives.

    .venv/bin/python benchmarks/torture.py [--data ../shared/data] [--kills 20] [--n 40] [--seed 0]
        [--detector ../shared/assets/yolov8n_int8.tflite]

A folder of `--n` real photos (Caltech and scraped web photos, copied to a temp folder) is curated
once without interruption (the reference). Then, `--kills` times: a fresh `curate run` on a new work
folder is killed with SIGKILL of its whole process group (workers included) at a random moment
within the reference's duration, rerun to completion, and its manifest compared with the
reference's, every column and row (provenance metadata, which holds times, aside). After each rerun
the work folder is searched for leftovers: temp files of atomic writes and partial logs.
Prints tried / identical / leftovers and the moments that differed.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from manifests import read_manifest  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_DETECTOR = REPO.parent / "shared" / "assets" / "yolov8n_int8.tflite"
CURATE = [sys.executable, "-c", "from curate.cli import main; main()"]


def make_folder(data: Path, n: int, dest: Path) -> Path:
    web = sorted((data / "web" / "bikes").iterdir())[: n // 4]
    caltech = sorted((data / "motorbikes" / "caltech101").iterdir())[: n - len(web)]
    dest.mkdir(parents=True)
    for f in [*caltech, *web]:
        shutil.copy(f, dest / f.name)
    return dest


def run(folder: Path, work: Path, detector: str, kill_after: float | None = None) -> tuple[int, float]:
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0", "FIFTYONE_DO_NOT_TRACK": "true"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([*CURATE, "run", str(folder), "-o", str(work), "--weights", detector, "--no-report"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO,
                            start_new_session=True)
    if kill_after is None:
        return proc.wait(), time.perf_counter() - t0
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return -9, time.perf_counter() - t0
    return proc.returncode, time.perf_counter() - t0   # finished before the kill


def table(work: Path):
    df = read_manifest(work / "manifest.parquet").df
    return df.sort_values(["sample_id"]).reset_index(drop=True)


def leftovers(work: Path) -> list[str]:
    """Temp files of atomic writes (`.<name>.<random><suffix>`), journals and locks' temp files: none
    should survive a completed rerun."""
    from curate.leftovers import is_leftover

    return sorted(str(p.relative_to(work)) for p in work.rglob("*")
                  if p.is_file() and (is_leftover(p.name) or p.name.startswith("partial-")))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--detector", default=str(DEFAULT_DETECTOR))
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--n", type=int, default=40, help="photos in the tortured folder")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if not a.data.is_dir():
        print(f"--data {a.data}: not a folder", file=sys.stderr)
        return 2
    rng = random.Random(a.seed)
    with tempfile.TemporaryDirectory(prefix="torture-") as tmp:
        tmp = Path(tmp)
        folder = make_folder(a.data, a.n, tmp / "photos")
        code, secs = run(folder, tmp / "ref", a.detector)
        if code != 0:
            print(f"the reference run failed (exit {code})", file=sys.stderr)
            return 1
        ref = table(tmp / "ref")
        print(f"reference: {len(ref)} rows from {a.n} photos in {secs:.1f} s")
        identical, dirty, differ, killed = 0, 0, [], 0
        for k in range(a.kills):
            work = tmp / f"w{k}"
            at = rng.uniform(0.3, secs)
            code, _ = run(folder, work, a.detector, kill_after=at)
            killed += code == -9
            code2, _ = run(folder, work, a.detector)
            if code2 != 0:
                differ.append((k, at, f"rerun exit {code2}"))
                continue
            got = table(work)
            same = got.shape == ref.shape and list(got.columns) == list(ref.columns) and got.equals(ref)
            if same:
                identical += 1
            else:
                cols = [c for c in ref.columns if c not in got.columns or not got[c].equals(ref[c])]
                differ.append((k, at, f"columns differ: {cols[:6]}"))
            left = leftovers(work)
            if left:
                dirty += 1
                differ.append((k, at, f"leftovers: {left[:3]}"))
            shutil.rmtree(work)
        print(f"tried {a.kills} (killed mid-run {killed}), identical {identical}, with leftovers {dirty}")
        for k, at, why in differ:
            print(f"  kill {k} at {at:.1f} s: {why}")
    return 0 if identical == a.kills and not dirty else 1


if __name__ == "__main__":
    sys.exit(main())
