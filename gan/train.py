"""The training loop. Read top to bottom: set-up, the step (D update, then G update), the loop.

    run = train(PRESETS["tiny"], data=Path("pack.npy"), out=Path("runs"))       # a new numbered run
    run = resume(run, overrides={"steps": 40})                                  # continue it

The images live on the device as uint8 and are augmented there; every random number of a step
comes from one CPU generator (`gan.data.StepRandom`) so a resumed run is exact. Speed switches
(bf16 autocast, channels_last, one CUDA graph for the whole step, torch.compile) change how the
step runs, not what it computes. Under `torchrun` the global batch is split across ranks (DDP,
gloo on the CPU, nccl on CUDA); rank 0 writes the run directory.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from . import augment
from .checkpoint import load_checkpoint, save_checkpoint, set_rng_states
from .config import TrainConfig, UserError
from .data import StepRandom, TrainData, load_images, to_device
from .ema import EMA
from .generate import resolve_device, sample
from .losses import get_loss
from .models import build_models, count_parameters
from .rundir import Stats, create_run_dir, image_grid, plot_losses, save_png, write_json

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- set-up

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """Single process, or the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world == 1:
        return Dist(0, 1, dev)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), dev)


def _load(size: int, d: Dist, data, manifest, progress: bool) -> TrainData:
    """The images; under DDP rank 0 goes first so that only one process (re)builds a stale pack."""
    if d.world > 1 and not d.main:
        dist.barrier()
    images = load_images(size, data=data, manifest=manifest, progress=progress and d.main)
    if d.world > 1 and d.main:
        dist.barrier()
    return images


def _broadcast(obj, d: Dist):
    if d.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@dataclass
class State:
    """Everything a checkpoint holds besides the config."""
    G: torch.nn.Module
    D: torch.nn.Module
    ema: EMA | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    rand: StepRandom
    step: int = 0

    def payload(self, cfg: TrainConfig, data: TrainData, world: int) -> dict:
        return {
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "G_ema": self.ema.state_dict() if self.ema else None,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "step": self.step, "config": cfg.to_dict(), "random": self.rand.state_dict(),
            "data": {"source": data.source, "key": data.key, "n": int(len(data.images))},
            "world_size": world,
        }

    def load(self, ck: dict) -> None:
        self.G.load_state_dict(ck["G"])
        self.D.load_state_dict(ck["D"])
        if self.ema is not None:
            self.ema.load_state_dict(ck["G_ema"] if ck.get("G_ema") is not None else ck["G"])
        self.opt_g.load_state_dict(ck["opt_g"])
        self.opt_d.load_state_dict(ck["opt_d"])
        self.rand.load_state_dict(ck["random"])
        self.step = int(ck["step"])
        set_rng_states(ck["rng"])


def build_state(cfg: TrainConfig, n_images: int, device: torch.device) -> State:
    G, D = build_models(cfg, device)
    if cfg.channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    adam = {"betas": (cfg.beta1, cfg.beta2), "capturable": cfg.cuda_graph and device.type == "cuda"}
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, **adam)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, **adam)
    ema = EMA(G, cfg.ema_kimg, cfg.ema_rampup) if cfg.ema else None
    rand = StepRandom(n_images, cfg.batch, cfg.nz, augment.n_uniforms(cfg.diffaug), cfg.seed)
    return State(G, D, ema, opt_g, opt_d, rand)


# ------------------------------------------------------------------------------------------ the step

def make_step(cfg: TrainConfig, G, D, opt_g, opt_d, images: torch.Tensor, *, graphed: bool = False):
    """The training step on one batch of draws (already on the device). Returns detached
    (loss_d, loss_g, mean D(real), mean D(fake)). G and D may be DDP/compiled wrappers."""
    loss = get_loss(cfg.loss)
    y, policy = cfg.real_label, cfg.diffaug
    D_params = [p for p in D.parameters()]
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    amp = dict(device_type=images.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16",
               cache_enabled=not graphed)
    D_inner = getattr(D, "_orig_mod", D)                    # under torch.compile
    no_sync = D_inner.no_sync if isinstance(D_inner, DDP) else contextlib.nullcontext

    def aug(x, u):
        return augment.diff_augment(x, policy, u) if policy else x

    def step(idx, z, u_real, u_diff):
        real = augment.real_batch(images[idx], u_real, flip_p=cfg.flip_p, rotate_p=cfg.rotate_p,
                                  rotate_deg=cfg.rotate_deg).contiguous(memory_format=fmt)
        # D: [mean((C(xr) - mean C(xf) - y)^2) + mean((C(xf) - mean C(xr) + y)^2)] / 2 for RaLSGAN
        opt_d.zero_grad(set_to_none=True)
        with torch.autocast(**amp):
            fake = G(z[:, :, None, None])
            d_real = D(aug(real, u_diff[0])).float()
            d_fake = D(aug(fake.detach(), u_diff[1])).float()
        loss_d = loss.d(d_real, d_fake, y)
        loss_d.backward()
        opt_d.step()
        # G: the same fake batch through the updated D, against this step's (detached) real logits
        opt_g.zero_grad(set_to_none=True)
        for p in D_params:
            p.requires_grad_(False)
        with no_sync(), torch.autocast(**amp):
            d_fake_g = D(aug(fake, u_diff[2])).float()
        loss_g = loss.g(d_real.detach(), d_fake_g, y)
        loss_g.backward()
        opt_g.step()
        for p in D_params:
            p.requires_grad_(True)
        return loss_d.detach(), loss_g.detach(), d_real.detach().mean(), d_fake.detach().mean()

    return step


class GraphedStep:
    """Runs `step` eagerly for a few warm-up steps on a side stream, then captures it in one CUDA
    graph and replays it; each call copies the step's draws into the graph's static inputs."""

    def __init__(self, step, warmup: int = 3):
        self.step, self.warmup, self.calls = step, warmup, 0
        self.static: dict[str, torch.Tensor] | None = None
        self.graph, self.out = None, None

    def __call__(self, device: torch.device, **draws):
        if self.static is None:
            self.static = {k: torch.empty_like(v, device=device) for k, v in draws.items()}
        for k, v in draws.items():
            self.static[k].copy_(v.pin_memory() if v.numel() else v, non_blocking=True)
        if self.calls < self.warmup:
            self.calls += 1
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                out = self.step(**self.static)
            torch.cuda.current_stream(device).wait_stream(side)
            return out
        if self.graph is None:
            torch.cuda.synchronize(device)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.out = self.step(**self.static)
            log.info("captured the training step in a CUDA graph")
        self.graph.replay()
        return self.out


# ---------------------------------------------------------------------------------------- the loop

def train(cfg: TrainConfig, *, data: Path | None = None, manifest: Path | None = None, out: Path = Path("runs"),
          device: str = "auto", inception_weights: Path | None = None, progress: bool = True) -> Path:
    """Train a new run in `out/<NNNNN>-<cfg.name>/`; returns the run directory."""
    d = init_distributed(device)
    images = _load(cfg.size, d, data, manifest, progress)
    run_dir = None
    if d.main:
        run_dir = create_run_dir(out, cfg.name)
        write_json(run_dir / "config.json", {**cfg.to_dict(), "data": images.source, "manifest":
                                             str(Path(manifest).resolve()) if manifest else None, "world_size": d.world,
                                             "device": str(d.device), "torch": torch.__version__})
    run_dir = Path(_broadcast(str(run_dir) if run_dir else None, d))
    return _fit(cfg, images, run_dir, d, manifest=manifest, inception_weights=inception_weights, progress=progress)


# Options that change the networks' shapes: a checkpoint cannot be loaded under other values.
ARCHITECTURE_FIELDS = ("size", "nz", "g_channels", "d_channels", "spectral_norm")


def resume(run_dir: Path, *, overrides: dict | None = None, data: Path | None = None, manifest: Path | None = None,
           device: str = "auto", inception_weights: Path | None = None, progress: bool = True) -> Path:
    """Continue a run from its `checkpoint.pt`: same step, same next batch. `overrides` may change
    e.g. `steps`; the data is the run's own unless `data`/`manifest` is given."""
    run_dir = Path(run_dir)
    ck = load_checkpoint(run_dir / "checkpoint.pt")
    cfg = TrainConfig.from_dict(ck["config"])
    changes = {k: v for k, v in (overrides or {}).items() if getattr(cfg, k, object()) != v}
    fixed = sorted(set(changes) & set(ARCHITECTURE_FIELDS))
    if fixed:  # refused before any file of the run is touched
        raise UserError(f"--resume {run_dir}: {', '.join(fixed)} cannot change in a resumed run "
                        "(the checkpoint's networks have another shape); start a new run instead")
    cfg = cfg.replace(**changes)
    if cfg.steps < ck["step"]:
        raise UserError(f"--steps {cfg.steps}: the checkpoint is already at step {ck['step']}")
    if data is None and manifest is None:
        conf = _read_json(run_dir / "config.json")
        manifest = Path(conf["manifest"]) if conf.get("manifest") else None
        data = None if manifest else Path(ck["data"]["source"])
    d = init_distributed(device)
    images = _load(cfg.size, d, data, manifest, progress)
    if d.main:
        log.info("resuming %s at step %d%s", run_dir, ck["step"], f" with {changes}" if changes else "")
        conf = _read_json(run_dir / "config.json")
        conf.update(cfg.to_dict())
        conf.setdefault("resumed", []).append({"step": int(ck["step"]), "changes": changes})
        write_json(run_dir / "config.json", conf)
        Stats(run_dir / "stats.jsonl").truncate_after(int(ck["step"]))
    return _fit(cfg, images, run_dir, d, checkpoint=ck, manifest=manifest,
                inception_weights=inception_weights, progress=progress)


def _read_json(path: Path) -> dict:
    import json

    return json.loads(Path(path).read_text()) if Path(path).exists() else {}


class _StopAfterStep:
    """Ctrl-C during training stops after the step in flight, so the checkpoint saved then is
    exactly that step's state (a step cut in half would resume one batch off). A second Ctrl-C
    stops at once, keeping the last periodic checkpoint."""

    requested = False

    def __enter__(self):
        import signal
        import threading

        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        import signal

        if self.requested:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        import signal

        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def _fit(cfg: TrainConfig, data: TrainData, run_dir: Path, d: Dist, *, checkpoint: dict | None = None,
         manifest: Path | None = None, inception_weights: Path | None = None, progress: bool = True) -> Path:
    from tqdm import tqdm

    dev = d.device
    if cfg.batch % d.world:
        raise UserError(f"--batch {cfg.batch} must be divisible by the number of processes ({d.world})")
    graphed = cfg.cuda_graph and dev.type == "cuda" and d.world == 1
    if cfg.cuda_graph and not graphed:
        log.warning("cuda_graph needs a single CUDA process: running the step eagerly")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True          # fixed shapes: let cuDNN pick the fastest kernels
    images = to_device(data.images, dev)
    st = build_state(cfg, len(images), dev)
    if checkpoint is not None:
        st.load(checkpoint)
    if d.main:
        log.info("G %s params, D %s params, %d images of %dx%d on %s", f"{count_parameters(st.G):,}",
                 f"{count_parameters(st.D):,}", len(images), cfg.size, cfg.size, dev)

    G, D = st.G, st.D
    if d.world > 1:
        G, D = DDP(G, broadcast_buffers=False), DDP(D, broadcast_buffers=False)
    if cfg.compile and not graphed:
        G, D = torch.compile(G), torch.compile(D)
    step_fn = make_step(cfg, G, D, st.opt_g, st.opt_d, images, graphed=graphed)
    runner = GraphedStep(step_fn) if graphed else None

    b, lo = cfg.batch // d.world, d.rank * (cfg.batch // d.world)
    z_grid = torch.randn(cfg.n_grid, cfg.nz, generator=torch.Generator().manual_seed(cfg.seed + 1))
    stats = Stats(run_dir / "stats.jsonl")
    metrics = _Metrics(cfg, data, run_dir, inception_weights, dev) if d.main and cfg.fid_every else None
    bar = tqdm(total=cfg.steps * cfg.batch, initial=st.step * cfg.batch, unit="img", unit_scale=True,
               disable=not (progress and d.main), desc=run_dir.name, dynamic_ncols=True)
    t_last, step_last = time.perf_counter(), st.step

    def save():
        if d.main:
            save_checkpoint(run_dir / "checkpoint.pt", st.payload(cfg, data, d.world))

    try:
        with _StopAfterStep() as stop:
            while st.step < cfg.steps:
                draws = st.rand.draw()
                mine = {"idx": draws["idx"][lo:lo + b], "z": draws["z"][lo:lo + b],
                        "u_real": draws["u_real"][lo:lo + b], "u_diff": draws["u_diff"][:, lo:lo + b]}
                if runner is not None:
                    out = runner(dev, **mine)
                else:
                    out = step_fn(**{k: v.to(dev, non_blocking=True) for k, v in mine.items()})
                st.step += 1
                if st.ema is not None:
                    st.ema.update(st.G, cfg.batch, st.step * cfg.batch)
                bar.update(cfg.batch)

                if st.step % cfg.log_every == 0 or st.step == cfg.steps:
                    loss_d, loss_g, d_real, d_fake = (float(t) for t in out)
                    now = time.perf_counter()
                    rate = (st.step - step_last) * cfg.batch / max(now - t_last, 1e-9)
                    t_last, step_last = now, st.step
                    rec = {"step": st.step, "kimg": st.step * cfg.batch / 1000, "epoch": st.rand.sampler.epoch,
                           "loss_d": loss_d, "loss_g": loss_g, "d_real": d_real, "d_fake": d_fake,
                           "img_per_s": round(rate, 1)}
                    if d.main:
                        stats.append(rec)
                    bar.set_postfix(d=f"{loss_d:.3f}", g=f"{loss_g:.3f}", ips=f"{rate:,.0f}")
                    if bar.disable and d.main:
                        log.info("step %d/%d  D %.4f  G %.4f  %.1f img/s", st.step, cfg.steps, loss_d, loss_g, rate)
                    if not all(map(_finite, (loss_d, loss_g))):
                        raise RuntimeError(f"non-finite loss at step {st.step}: D {loss_d}, G {loss_g}")
                if d.main and ((cfg.sample_every and st.step % cfg.sample_every == 0) or st.step == cfg.steps):
                    gen = st.ema.module if st.ema else st.G
                    save_png(run_dir / f"samples-{st.step:07d}.png", image_grid(sample(gen, z_grid)))
                if cfg.ckpt_every and st.step % cfg.ckpt_every == 0 and st.step < cfg.steps:
                    save()
                    if d.main:
                        plot_losses(stats.path, run_dir / "loss.png")
                if metrics is not None and st.step % cfg.fid_every == 0:
                    rec = metrics(st.ema.module if st.ema else st.G, st.step)
                    if rec:
                        stats.append(rec)
                if stop.requested:
                    log.warning("interrupted after step %d: saving a checkpoint to resume from", st.step)
                    save()
                    raise KeyboardInterrupt
    finally:
        bar.close()
    save()
    if d.main:
        plot_losses(stats.path, run_dir / "loss.png")
        log.info("finished %s at step %d", run_dir, st.step)
    if d.world > 1:
        dist.barrier()
    return run_dir


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


class _Metrics:
    """`--fid-every`: FID/KID/MiFID via gan.metrics; the weightless metrics when Inception is missing."""

    def __init__(self, cfg: TrainConfig, data: TrainData, run_dir: Path, weights, device: torch.device):
        self.cfg, self.data, self.run_dir, self.weights, self.device = cfg, data, run_dir, weights, device
        self.inception_ok = True
        self.z = torch.randn(cfg.fid_n, cfg.nz, generator=torch.Generator().manual_seed(cfg.seed + 2))

    def __call__(self, G, step: int) -> dict | None:
        try:
            from . import metrics
        except ImportError as exc:
            log.warning("gan.metrics is unavailable (%s): skipping the evaluation at step %d", exc, step)
            return None
        fake = sample(G, self.z, batch=min(250, self.cfg.fid_n))
        real = self.data.images
        if self.inception_ok:
            try:
                vals = metrics.evaluate(fake, real, inception_weights=self.weights, device=str(self.device),
                                        cache_dir=self.run_dir.parent / ".fid-cache", cache_key=self.data.key)
                log.info("step %d: %s", step, vals)
                return {"step": step, "metrics": vals}
            except metrics.InceptionUnavailable as exc:
                self.inception_ok = False
                log.warning("FID is unavailable (%s): reporting the weightless metrics instead", exc)
        vals = metrics.weightless_metrics(fake, real, device=str(self.device), seed=self.cfg.seed)
        log.info("step %d: %s", step, vals)
        return {"step": step, "metrics": vals, "fid_unavailable": True}
