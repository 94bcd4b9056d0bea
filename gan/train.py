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

from manifests.outpaths import check_out_dir

from . import augment
from .checkpoint import load_checkpoint, save_checkpoint, set_rng_states
from .config import TrainConfig, UserError
from .data import StepRandom, TrainData, load_images, to_device
from .ema import EMA
from .generate import resolve_device, sample, sample_n
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
    images: int = 0         # real images seen so far (steps x batch, summed over resumes with other batches)

    def payload(self, cfg: TrainConfig, data: TrainData, world: int) -> dict:
        return {
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "G_ema": self.ema.state_dict() if self.ema else None,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "step": self.step, "images": self.images, "config": cfg.to_dict(), "random": self.rand.state_dict(),
            "data": {"source": data.source, "key": data.key, "n": int(len(data.images))},
            "world_size": world,
        }

    def load(self, ck: dict, cfg: TrainConfig) -> None:
        """The checkpoint's state; the optimisers' hyper-parameters are `cfg`'s (a resume may change
        them: load_state_dict alone would bring back the checkpoint's learning rate)."""
        self.G.load_state_dict(ck["G"])
        self.D.load_state_dict(ck["D"])
        if self.ema is not None:
            self.ema.load_state_dict(ck["G_ema"] if ck.get("G_ema") is not None else ck["G"])
        self.opt_g.load_state_dict(ck["opt_g"])
        self.opt_d.load_state_dict(ck["opt_d"])
        for opt, lr in ((self.opt_g, cfg.lr_g), (self.opt_d, cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"], group["betas"] = lr, (cfg.beta1, cfg.beta2)
        self.rand.load_state_dict(ck["random"])
        self.step = int(ck["step"])
        self.images = int(ck.get("images", self.step * ck["config"]["batch"]))  # older checkpoints: one batch size
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
    check_out_dir(out, "--out")
    d = init_distributed(device)
    images = _load(cfg.size, d, data, manifest, progress)

    def start():  # the --fid-every checks come before the run directory: a failure leaves nothing behind
        metrics = _make_metrics(cfg, images, Path(out) / ".fid-cache", inception_weights, d.device)
        run_dir = create_run_dir(out, cfg.name)
        write_json(run_dir / "config.json", {**cfg.to_dict(), "data": images.source, "manifest":
                                             str(Path(manifest).resolve()) if manifest else None, "world_size": d.world,
                                             "device": str(d.device), "torch": torch.__version__})
        return run_dir, metrics

    run_dir, metrics = _on_main(start, d)
    return _fit(cfg, images, Path(run_dir), d, metrics=metrics, progress=progress)


def _on_main(fn, d: Dist):
    """`fn()` on rank 0, its first value broadcast to every rank. A failure there is raised on every
    rank (the others would otherwise wait in the broadcast forever): rank 0 raises it as it is."""
    value, rest, err, failure = None, None, None, None
    if d.main:
        try:
            value, rest = fn()
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the other ranks are told
            failure = exc
            err = str(exc) if isinstance(exc, UserError) else f"rank 0 failed: {type(exc).__name__}: {exc}"
    value, err = _broadcast((str(value) if value is not None else None, err), d)
    if failure is not None:
        raise failure
    if err is not None:
        raise UserError(err)
    return value, rest


# Options that change the networks' shapes: a checkpoint cannot be loaded under other values.
ARCHITECTURE_FIELDS = ("size", "nz", "g_channels", "d_channels", "spectral_norm")


def resume(run_dir: Path, *, overrides: dict | None = None, data: Path | None = None, manifest: Path | None = None,
           device: str = "auto", inception_weights: Path | None = None, progress: bool = True) -> Path:
    """Continue a run from its `checkpoint.pt`: same step, same next batch. `overrides` may change
    e.g. `steps`; the data is the run's own unless `data`/`manifest` is given. A run stopped before
    its first checkpoint (only `config.json`) starts again from step 0 with its config."""
    run_dir = Path(run_dir)
    conf = _read_json(run_dir / "config.json")
    if not (run_dir / "checkpoint.pt").exists():
        if not (run_dir / "config.json").exists():
            raise UserError(f"--resume {run_dir}: no checkpoint.pt or config.json (not a run directory)")
        if not (conf.get("data") or conf.get("manifest")):
            raise UserError(f"--resume {run_dir}: config.json names no data or manifest and there is no "
                            "checkpoint; start a new run")
    if (run_dir / "checkpoint.pt").exists():
        ck = load_checkpoint(run_dir / "checkpoint.pt")
        base, step = ck["config"], int(ck["step"])
    else:
        log.warning("%s has no checkpoint yet (it was stopped before the first): starting it from step 0 "
                    "with its config.json", run_dir)
        ck, base, step = None, conf, 0
    cfg = TrainConfig.from_dict(base)
    changes = {k: v for k, v in (overrides or {}).items() if getattr(cfg, k, object()) != v}
    fixed = sorted(set(changes) & set(ARCHITECTURE_FIELDS))
    if fixed:  # refused before any file of the run is touched
        raise UserError(f"--resume {run_dir}: {', '.join(fixed)} cannot change in a resumed run "
                        "(the checkpoint's networks have another shape); start a new run instead")
    cfg = cfg.replace(**changes)
    if cfg.steps < step:
        raise UserError(f"--steps {cfg.steps}: the checkpoint is already at step {step}")
    if data is None and manifest is None:
        manifest = Path(conf["manifest"]) if conf.get("manifest") else None
        data = None if manifest else Path(ck["data"]["source"] if ck else conf["data"])
    d = init_distributed(device)
    images = _load(cfg.size, d, data, manifest, progress)

    def start():
        metrics = _make_metrics(cfg, images, run_dir.parent / ".fid-cache", inception_weights, d.device)
        log.info("resuming %s at step %d%s", run_dir, step, f" with {changes}" if changes else "")
        new = _read_json(run_dir / "config.json")
        new.update(cfg.to_dict())
        new.setdefault("resumed", []).append({"step": step, "changes": changes})
        write_json(run_dir / "config.json", new)
        Stats(run_dir / "stats.jsonl").truncate_after(step)
        return run_dir, metrics

    _, metrics = _on_main(start, d)
    return _fit(cfg, images, run_dir, d, checkpoint=ck, metrics=metrics, progress=progress)


def _read_json(path: Path) -> dict:
    import json

    try:
        conf = json.loads(Path(path).read_text()) if Path(path).exists() else {}
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable run config ({exc})") from None
    if not isinstance(conf, dict):
        raise UserError(f"{path}: not a run config (a JSON object is expected)")
    return conf


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
         metrics: "_Metrics | None" = None, progress: bool = True) -> Path:
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
        st.load(checkpoint, cfg)
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
    bar = tqdm(total=cfg.steps * cfg.batch, initial=st.step * cfg.batch, unit="img", unit_scale=True,
               disable=not (progress and d.main), desc=run_dir.name, dynamic_ncols=True)
    t_last, step_last = time.perf_counter(), st.step
    saved = st.step if checkpoint is not None else None     # the step of the checkpoint on disk
    out = None

    def diverged(what: str) -> UserError:
        kept = (f"the checkpoint of step {saved} is kept" if saved is not None
                else "no checkpoint had been saved yet (a resume starts from step 0)")
        return UserError(f"training diverged at step {st.step} ({what}); {kept}; resume with a lower learning "
                         f"rate than {cfg.lr_g:g}: gan train --resume {run_dir} --lr LR")

    def save():
        nonlocal saved
        if not _finite_state(st, out):  # never replace the last good checkpoint with a NaN state
            raise diverged("non-finite losses or weights")
        if d.main:
            save_checkpoint(run_dir / "checkpoint.pt", st.payload(cfg, data, d.world))
        saved = st.step

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
                st.images += cfg.batch
                if st.ema is not None:
                    st.ema.update(st.G, cfg.batch, st.images)
                bar.update(cfg.batch)

                if st.step % cfg.log_every == 0 or st.step == cfg.steps:
                    loss_d, loss_g, d_real, d_fake = (float(t) for t in out)
                    now = time.perf_counter()
                    rate = (st.step - step_last) * cfg.batch / max(now - t_last, 1e-9)
                    t_last, step_last = now, st.step
                    rec = {"step": st.step, "kimg": st.images / 1000, "epoch": st.rand.sampler.epoch,
                           "loss_d": loss_d, "loss_g": loss_g, "d_real": d_real, "d_fake": d_fake,
                           "img_per_s": round(rate, 1)}
                    if d.main:
                        stats.append(rec)
                    bar.set_postfix(d=f"{loss_d:.3f}", g=f"{loss_g:.3f}", ips=f"{rate:,.0f}")
                    if bar.disable and d.main:
                        log.info("step %d/%d  D %.4f  G %.4f  %.1f img/s", st.step, cfg.steps, loss_d, loss_g, rate)
                    if not all(map(_finite, (loss_d, loss_g))):
                        raise diverged(f"D loss {loss_d}, G loss {loss_g}")
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


def _finite_state(st: State, out) -> bool:
    """The last step's losses (`out`, None before the first step) and every weight of G and D are finite.
    (Not the BatchNorm running statistics: training and sampling use batch statistics, so an overflow
    there, at a huge learning rate, does not stop a run from resuming.)"""
    checks = [torch.isfinite(p).all() for p in (*st.G.parameters(), *st.D.parameters())]
    if out is not None:
        checks.append(torch.isfinite(torch.stack([t.float() for t in out[:2]])).all())
    return bool(torch.stack(checks).all())


def _make_metrics(cfg: TrainConfig, data: TrainData, cache_dir: Path, weights, device: torch.device):
    """The `--fid-every` evaluator (None without --fid-every), checked before training starts."""
    if not cfg.fid_every:
        return None
    try:
        from . import metrics
    except ImportError as exc:
        log.warning("gan.metrics is unavailable (%s): --fid-every is skipped", exc)
        return None
    return _Metrics(metrics, cfg, data, cache_dir, weights, device)


class _Metrics:
    """`--fid-every`: FID/KID/MiFID via gan.metrics; the weightless metrics when Inception is missing.

    Made before training: an `--inception-weights` file that is not the FID Inception (or not a
    weights file at all) stops the run there, as does training data too small for the metrics."""

    def __init__(self, metrics, cfg: TrainConfig, data: TrainData, cache_dir: Path, weights, device: torch.device):
        self.M, self.cfg, self.data, self.cache_dir, self.weights, self.device = (
            metrics, cfg, data, Path(cache_dir), weights, device)
        self.inception_ok = True
        try:
            metrics.load_inception(weights, device=str(device))  # loads the network once, cached for later
        except metrics.InceptionUnavailable as exc:
            if weights is not None:                              # the file the user named is unusable
                raise
            self.inception_ok = False
            log.warning("FID is unavailable (%s): --fid-every reports the weightless metrics instead",
                        str(exc).replace(", or use --weightless for metrics that need no weights", ""))
        names = metrics.DEFAULT_METRICS if self.inception_ok else tuple(metrics.WEIGHTLESS)
        metrics.check_counts(cfg.fid_n, len(data.images), names, fake="--fid-n",
                             real="--fid-every: the training data")

    def __call__(self, G, step: int) -> dict | None:
        M = self.M
        fake = sample_n(G, self.cfg.fid_n, self.cfg.seed + 2)
        real = self.data.images
        if self.inception_ok:
            try:
                vals = M.evaluate(fake, real, inception_weights=self.weights, device=str(self.device),
                                  cache_dir=self.cache_dir, cache_key=self.data.key)
                log.info("step %d: %s", step, vals)
                return {"step": step, "metrics": vals}
            except M.InceptionUnavailable as exc:
                self.inception_ok = False
                log.warning("FID is unavailable (%s): reporting the weightless metrics instead",
                            str(exc).replace(", or use --weightless for metrics that need no weights", ""))
        vals = M.weightless_metrics(fake, real, device=str(self.device), seed=self.cfg.seed)
        log.info("step %d: %s", step, vals)
        return {"step": step, "metrics": vals, "fid_unavailable": True}
