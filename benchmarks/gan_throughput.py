"""Training throughput (images/second): the blog's loop vs `gan train`'s step, in one run.

(a) blog: a faithful reimplementation of the notebook's loop: JPEG files on disk decoded by PIL
    every step, torchvision transforms (Resize, CenterCrop, flip p=0.5, rotation <=5 deg p=0.3),
    a DataLoader (shuffle, workers), fp32, batch 64, the RaLSGAN updates.
(b) ours: `gan.step.make_step` at the seed preset: uint8 data on the device, augmentation there,
    draws from the step generator, at batch 64 and 256, with the speed switches (bf16 autocast,
    channels_last, the whole step in one CUDA graph on CUDA).

Self-contained: needs only torch, torchvision, numpy and pillow (plus this repository's `gan`);
it writes its own JPEGs into a temporary folder. Prints a table with each figure's ratio to the
blog loop. Examples:

    python benchmarks/gan_throughput.py                                  # CUDA when present
    python benchmarks/gan_throughput.py --device cpu --steps 2 --warmup 1 --images 256 --variants fp32
    python benchmarks/gan_throughput.py --batches 64,256,512 --variants fp32,bf16-cl,graph-fp32,graph-bf16-cl
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan import augment  # noqa: E402
from gan.config import PRESETS  # noqa: E402
from gan.data import StepRandom  # noqa: E402
from gan.models import build_models  # noqa: E402
from gan.step import GraphedStep, build_state, make_step  # noqa: E402

VARIANTS = {          # name -> (precision, channels_last, cuda_graph, torch.compile)
    "fp32": ("fp32", False, False, False),
    "bf16-cl": ("bf16", True, False, False),
    "graph-fp32": ("fp32", False, True, False),
    "graph-bf16-cl": ("bf16", True, True, False),
    "compile-bf16": ("bf16", False, False, True),
    "compile-bf16-cl": ("bf16", True, False, True),
}
CUDA_ONLY = {v for v, (_, _, graph, comp) in VARIANTS.items() if graph or comp}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_jpegs(folder: Path, n: int, size: int = 160, seed: int = 0) -> list[Path]:
    """Photo-like JPEGs (smooth gradients + blobs + noise), a little larger than the training size."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    paths = []
    for i in range(n):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        img = c0 * (1 - yy[..., None]) + c1 * xx[..., None]
        for _ in range(3):
            cy, cx, r = rng.uniform(0, 1, 3)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < (0.1 + 0.2 * r) ** 2] = rng.uniform(0, 255, 3)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        p = folder / f"{i:05d}.jpg"
        Image.fromarray(img).save(p, quality=90)
        paths.append(p)
    return paths


class JpegFolder(torch.utils.data.Dataset):
    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            return self.transform(im.convert("RGB")), 0


def bench_blog(paths, device, steps, warmup, workers, batch=64) -> float:
    """The notebook's loop, fp32, as written (with the detached real logits current PyTorch needs)."""
    import torchvision.transforms as T

    cfg = PRESETS["seed"]
    tf = T.Compose([T.Resize(128), T.CenterCrop(128), T.RandomHorizontalFlip(p=0.5),
                    T.RandomApply([T.RandomRotation(degrees=5)], p=0.3), T.ToTensor(),
                    T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    loader = torch.utils.data.DataLoader(JpegFolder(paths, tf), batch_size=batch, shuffle=True, drop_last=True,
                                         num_workers=workers, pin_memory=device.type == "cuda",
                                         persistent_workers=workers > 0)
    netG, netD = build_models(cfg, device)
    optG = torch.optim.Adam(netG.parameters(), lr=cfg.lr_g, betas=(0.5, 0.999))
    optD = torch.optim.Adam(netD.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999))
    y = cfg.real_label
    done, t0 = 0, None
    while True:
        for real_images, _ in loader:
            if done == warmup:
                _sync(device)
                t0 = time.perf_counter()
            real_images = real_images.to(device)
            b = real_images.size(0)
            labels = torch.full((b,), y, device=device)
            netD.zero_grad()
            outputR = netD(real_images)
            noise = torch.randn(b, cfg.nz, 1, 1, device=device)
            fake = netG(noise)
            outputF = netD(fake.detach())
            errD = (torch.mean((outputR - torch.mean(outputF) - labels) ** 2)
                    + torch.mean((outputF - torch.mean(outputR) + labels) ** 2)) / 2
            errD.backward()
            optD.step()
            netG.zero_grad()
            outputF = netD(fake)
            outputR = outputR.detach()
            errG = (torch.mean((outputR - torch.mean(outputF) + labels) ** 2)
                    + torch.mean((outputF - torch.mean(outputR) - labels) ** 2)) / 2
            errG.backward()
            optG.step()
            done += 1
            if done == warmup + steps:
                errG.item()
                _sync(device)
                return steps * batch / (time.perf_counter() - t0)


def _our_step(images_u8: np.ndarray, device, batch, variant):
    """(one-step callable, config) of `gan train`'s step at the seed preset in `variant`."""
    precision, channels_last, graph, comp = VARIANTS[variant]
    cfg = PRESETS["seed"].replace(batch=batch, precision=precision, channels_last=channels_last,
                                  cuda_graph=graph, compile=comp)
    images = torch.from_numpy(images_u8).to(device)
    st = build_state(cfg, len(images), device)
    G, D = (torch.compile(st.G), torch.compile(st.D)) if comp else (st.G, st.D)
    step = make_step(cfg, G, D, st.opt_g, st.opt_d, images, graphed=graph)
    runner = GraphedStep(step) if graph else None
    rand = StepRandom(len(images), batch, cfg.nz, augment.n_uniforms(cfg.diffaug), cfg.seed)

    def one():
        draws = rand.draw()
        if runner is not None:
            return runner(device, **draws)
        return step(**{k: v.to(device, non_blocking=True) for k, v in draws.items()})
    return one


def bench_ours(images_u8: np.ndarray, device, steps, warmup, batch, variant) -> float:
    one = _our_step(images_u8, device, batch, variant)
    out, t0 = None, None
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        out = one()
    float(out[0])
    _sync(device)
    return steps * batch / (time.perf_counter() - t0)


def profile_ours(images_u8: np.ndarray, device, batch, variant, steps: int = 10, top: int = 15) -> dict:
    """The kernels that take the step's GPU time (torch.profiler, after a warm-up), most first."""
    from torch.profiler import ProfilerActivity, profile

    one = _our_step(images_u8, device, batch, variant)
    for _ in range(5):
        one()
    _sync(device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            out = one()
        float(out[0])
        _sync(device)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, attr, 0) > 0]
    total = sum(getattr(e, attr) for e in events) or 1.0
    events.sort(key=lambda e: -getattr(e, attr))
    rows = [{"name": e.key[:120], "calls_per_step": e.count / steps,
             "ms_per_step": getattr(e, attr) / 1000 / steps, "share": getattr(e, attr) / total}
            for e in events[:top]]
    return {"variant": variant, "batch": batch, "steps": steps, "ms_per_step_total": total / 1000 / steps,
            "kernels_per_step": sum(e.count for e in events) / steps, "top": rows}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 50 on CUDA, 2 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10 on CUDA, 1 on CPU)")
    ap.add_argument("--images", type=int, default=None, help="JPEGs / packed images (default 2048 on CUDA, 192 on CPU)")
    ap.add_argument("--workers", type=int, default=min(12, os.cpu_count() or 1), help="blog DataLoader workers")
    ap.add_argument("--batches", default="64,256", help="batch sizes for our step")
    ap.add_argument("--variants", default=None, help=f"comma list of {','.join(VARIANTS)} (default: all that apply)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--profile", default=None, metavar="VARIANT@BATCH",
                    help="also profile that step (top kernels by GPU time), e.g. bf16-cl@64")
    a = ap.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    cuda = device.type == "cuda"
    if a.threads:
        torch.set_num_threads(a.threads)
    steps = a.steps or (50 if cuda else 2)
    warmup = a.warmup if a.warmup is not None else (10 if cuda else 1)
    n_img = a.images or (2048 if cuda else 192)
    variants = a.variants.split(",") if a.variants else [v for v in VARIANTS if cuda or v not in CUDA_ONLY]
    if cuda:
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; {steps} timed steps after {warmup} warm-up; "
          f"{n_img} images; seed preset (128x128, {6.62:.2f} GFLOP/img/step)")

    results, errors = {}, {}
    with tempfile.TemporaryDirectory(prefix="gan-bench-") as tmp:
        paths = make_jpegs(Path(tmp), n_img)
        need = (warmup + steps) * 64
        if need > n_img:            # the blog loop runs over epochs; keep one DataLoader pass long enough
            paths = paths * (need // n_img + 1)
        results["blog loop, fp32, batch 64"] = bench_blog(paths, device, steps, warmup, a.workers)
        print(f"  blog loop (JPEG + DataLoader x{a.workers}, fp32, b64): {results['blog loop, fp32, batch 64']:,.1f} img/s",
              flush=True)
        from PIL import Image

        packed = np.stack([np.asarray(Image.open(p).convert("RGB").resize((128, 128), Image.LANCZOS))
                           for p in paths[:n_img]])
    for batch in (int(b) for b in a.batches.split(",")):
        for v in variants:
            if VARIANTS[v][2] and not cuda:
                continue
            key = f"gan train step, {v}, batch {batch}"
            try:
                results[key] = bench_ours(packed, device, steps, warmup, batch, v)
                print(f"  {key}: {results[key]:,.1f} img/s", flush=True)
            except Exception as exc:  # noqa: BLE001 - a variant that fails is a figure too (e.g. compile)
                errors[key] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:400] if str(exc).strip() else ''}"
                print(f"  {key}: FAILED {errors[key]}", flush=True)
    prof = None
    if a.profile:
        v, _, b = a.profile.partition("@")
        prof = profile_ours(packed, device, int(b or 64), v)
        print(f"\nprofile of {v} at batch {prof['batch']}: {prof['ms_per_step_total']:.2f} ms of "
              f"{'GPU' if cuda else 'CPU'} time per step in {prof['kernels_per_step']:.0f} kernels/ops")
        for r in prof["top"]:
            print(f"  {r['ms_per_step']:8.3f} ms {r['share'] * 100:5.1f}% x{r['calls_per_step']:5.1f}  {r['name']}")

    base = results["blog loop, fp32, batch 64"]
    print(f"\n{'configuration':<44} {'img/s':>11} {'x blog':>8} {'TFLOP/s':>8}")
    for k, v in results.items():
        print(f"{k:<44} {v:>11,.1f} {v / base:>8.2f} {v * 6.62e9 / 1e12:>8.2f}")
    if a.json:
        a.json.write_text(json.dumps({"device": name, "torch": torch.__version__, "steps": steps, "warmup": warmup,
                                      "results": results, "errors": errors, "profile": prof}, indent=2))
    return results


if __name__ == "__main__":
    main()
