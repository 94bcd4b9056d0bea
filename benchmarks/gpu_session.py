"""Issue 16's device call: every GPU figure of `gan` in one run, written to one JSON as it goes.

    python3 benchmarks/gpu_session.py --pack .gpu/pack.npz --out "$OUT" [--budget 540]

Needs only what the GPU machine has (torch, torchvision, numpy, pillow, click, tqdm, pytest) and this
repository: `gan` imports nothing of ultralytics, fiftyone or imagehash. The pack is a real one,
built here from `../shared/data` and carried (`--pack`, a compressed `.npz` of a uint8 (N, 128,
128, 3) array under the name `images`; `benchmarks/gpu_pack.py` makes it). In order, each step in
its own process with its share of `--budget` seconds, so one that fails or hangs costs only its own:

  1. the device (name, capability, memory, driver);
  2. `benchmarks/gan_throughput.py`: the blog loop and our step (fp32, bf16 + channels_last, CUDA
     graph) at batch 64 and 256, a profile of the bf16 + channels_last step at batch 64 (top
     kernels by GPU time); then the torch.compile variants in a process of their own;
  3. `pytest -m gpu` on the GAN tests;
  4. `gan train` with the `seed` and then the `fast` preset for an eighth of the budget each (about a minute) on the pack,
     stopped by SIGINT (a checkpoint is saved), seconds per 1,000 steps read from `stats.jsonl`;
  5. `gan generate` of 10,000 PNGs from the fast run, timed.

Writes `gpu_session.json`, `samples_seed.png`, `samples_fast.png` and `log.txt` under `--out`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SHARES = {"throughput": 0.22, "throughput_compile": 0.20, "pytest_gpu": 0.10, "seed": 0.13, "fast": 0.13,
          "generate_10000": 0.15}     # of --budget; the rest is start-up and slack


class Session:
    def __init__(self, out: Path, budget: float):
        self.out, self.t0, self.budget = out, time.monotonic(), budget
        self.figures: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.log = open(out / "log.txt", "a", encoding="utf-8")

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)

    def share(self, step: str) -> float:
        """Seconds for `step`: its share of the budget, leaving 10 s to each step after it."""
        names = list(SHARES)
        later = len(names) - names.index(step) - 1
        return max(5.0, min(SHARES[step] * self.budget, self.left() - 10.0 * later))

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.log.write(text + "\n")
        self.log.flush()

    def save(self) -> None:
        self.figures["seconds"] = round(time.monotonic() - self.t0, 1)
        tmp = self.out / "gpu_session.json.tmp"
        tmp.write_text(json.dumps(self.figures, indent=2, default=str))
        os.replace(tmp, self.out / "gpu_session.json")

    def run(self, name: str, cmd: list[str], timeout: float, **kw) -> dict:
        """Run `cmd` with a timeout; its outcome (rc, seconds, output tail) is recorded under `name`."""
        self.say(f"== {name}: {' '.join(cmd)} (timeout {timeout:.0f} s)")
        t = time.monotonic()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        try:
            p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, **kw)
            rc, text = p.returncode, p.stdout + p.stderr
        except subprocess.TimeoutExpired as exc:
            rc = "timeout"
            text = ((exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or "") + \
                   ((exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or "")
        rec = {"rc": rc, "seconds": round(time.monotonic() - t, 1), "tail": text[-3000:]}
        self.say(text[-6000:])
        self.figures.setdefault("steps", {})[name] = rec
        self.save()
        return rec


def device_info() -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(name=p.name, capability=f"{p.major}.{p.minor}", memory_gib=round(p.total_memory / 2**30, 1),
                    multiprocessors=p.multi_processor_count)
    try:
        info["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        info["nvidia_smi"] = f"not run: {exc}"
    return info


def train_for(s: Session, preset: str, data: Path, runs: Path, seconds: float, log_every: int = 250) -> dict:
    """`gan train --preset PRESET` for about `seconds`, then SIGINT (it saves a checkpoint and stops)."""
    cmd = [PY, "-m", "gan.train_cli", "--data", str(data), "--preset", preset, "--steps", "1000000",
           "--out", str(runs), "--name", preset, "--log-every", str(log_every), "--sample-every", str(8 * log_every),
           "--ckpt-every", "0", "--no-progress"]
    s.say(f"== train {preset}: {' '.join(cmd)} (about {seconds:.0f} s)")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    t = time.monotonic()
    with open(s.out / f"train_{preset}.log", "w") as logf:
        p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=logf, stderr=subprocess.STDOUT)
        try:
            p.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    run = next(iter(sorted(runs.glob(f"*-{preset}"))), None)
    rec: dict = {"rc": p.returncode, "seconds": round(time.monotonic() - t, 1), "run": str(run) if run else None,
                 "log_tail": (s.out / f"train_{preset}.log").read_text(errors="replace")[-2000:]}
    (s.out / f"train_{preset}.log").unlink()
    if run is not None:
        stats = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines() if x.strip()] \
            if (run / "stats.jsonl").is_file() else []
        rates = [r["img_per_s"] for r in stats if "img_per_s" in r][1:]      # the first window holds start-up
        conf = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
        batch = int(conf.get("batch", conf.get("config", {}).get("batch", 0)) or 0)
        if rates and batch:
            rates.sort()
            med = rates[len(rates) // 2]
            rec.update(steps=stats[-1]["step"], img_per_s_median=med, seconds_per_1000_steps=round(1000 * batch / med, 2),
                       batch=batch, last=stats[-1])
        grids = sorted(run.glob("samples-*.png"))
        if grids:
            shutil.copy(grids[-1], s.out / f"samples_{preset}.png")
            rec["samples"] = grids[-1].name
        rec["checkpoint"] = (run / "checkpoint.pt").is_file()
    s.figures.setdefault("train", {})[preset] = rec
    s.save()
    s.say(json.dumps({k: v for k, v in rec.items() if k != "log_tail"}, default=str))
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pack", type=Path, required=True, help="a .npz with `images`, uint8 (N, 128, 128, 3)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-session-out")))
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for the whole session (SHARES split it)")
    ap.add_argument("--log-every", type=int, default=250, help="training steps per stats record")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    s = Session(a.out, a.budget)
    s.figures["device"] = device_info()
    s.save()
    s.say(json.dumps(s.figures["device"]))
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="gpu-session-") as tmp:
        tmp = Path(tmp)
        data = tmp / "pack.npy"
        np.save(data, np.load(a.pack)["images"])
        s.figures["pack"] = {"file": str(a.pack), "shape": list(np.load(data, mmap_mode="r").shape)}
        thr = [PY, "benchmarks/gan_throughput.py", "--batches", "64,256"]
        s.run("throughput", [*thr, "--variants", "fp32,bf16-cl,graph-fp32,graph-bf16-cl", "--profile", "bf16-cl@64",
                             "--json", str(tmp / "thr.json")], s.share("throughput"))
        s.run("throughput_compile", [*thr, "--variants", "compile-bf16-cl", "--steps", "30",
                                     "--json", str(tmp / "thr_compile.json")], s.share("throughput_compile"))
        for name in ("thr", "thr_compile"):
            f = tmp / f"{name}.json"
            if f.is_file():
                s.figures[name.replace("thr", "throughput")] = json.loads(f.read_text())
        s.save()
        s.run("pytest_gpu", [PY, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                             "tests/test_gan_train.py", "tests/test_gan_train_options.py"], s.share("pytest_gpu"))
        runs = tmp / "runs"
        for preset in ("seed", "fast"):
            train_for(s, preset, data, runs, s.share(preset), a.log_every)
        fast = s.figures.get("train", {}).get("fast", {}).get("run")
        if fast and (Path(fast) / "checkpoint.pt").is_file():
            t = time.monotonic()
            rec = s.run("generate_10000", [PY, "-c", "from gan.cli import main; main()", "generate", "-c", str(Path(fast) / "checkpoint.pt"),
                                           "--n", "10000", "-o", str(tmp / "pngs"), "--no-progress"], s.share("generate_10000"))
            pngs = len(list((tmp / "pngs").glob("*.png"))) if (tmp / "pngs").is_dir() else 0
            s.figures["generate"] = {"seconds": round(time.monotonic() - t, 2), "pngs": pngs, "rc": rec["rc"]}
    s.save()
    s.say(f"done in {time.monotonic() - s.t0:.0f} s; figures in {a.out / 'gpu_session.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
