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

import logging
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from common.outpaths import check_out_dir

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, UserError
from .data import TrainData, to_device
from .distributed import Dist, init_distributed, load_on_ranks, on_main
from .sampling import sample
from .models import count_parameters
from .rundir import Stats, create_run_dir, image_grid, plot_losses, save_png, write_json
from .step import GraphedStep, State, build_state, make_step
from .stopping import StopAfterStep
from .train_metrics import PeriodicMetrics, make_metrics

log = logging.getLogger(__name__)



# ---------------------------------------------------------------------------------------- the loop

def train(cfg: TrainConfig, *, data: Path | None = None, manifest: Path | None = None, out: Path = Path("runs"),
          device: str = "auto", inception_weights: Path | None = None, progress: bool = True) -> Path:
    """Train a new run in `out/<NNNNN>-<cfg.name>/`; returns the run directory."""
    check_out_dir(out, "--out")
    d = init_distributed(device)
    images = load_on_ranks(cfg.size, d, data, manifest, progress)

    def start():  # the --fid-every checks come before the run directory: a failure leaves nothing behind
        metrics = make_metrics(cfg, images, Path(out) / ".fid-cache", inception_weights, d.device)
        run_dir = create_run_dir(out, cfg.name)
        write_json(run_dir / "config.json", {**cfg.to_dict(), "data": images.source, "manifest":
                                             str(Path(manifest).resolve()) if manifest else None, "world_size": d.world,
                                             "device": str(d.device), "torch": torch.__version__})
        return run_dir, metrics

    run_dir, metrics = on_main(start, d)
    return _fit(cfg, images, Path(run_dir), d, metrics=metrics, progress=progress)


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
    images = load_on_ranks(cfg.size, d, data, manifest, progress)

    def start():
        metrics = make_metrics(cfg, images, run_dir.parent / ".fid-cache", inception_weights, d.device)
        log.info("resuming %s at step %d%s", run_dir, step, f" with {changes}" if changes else "")
        new = _read_json(run_dir / "config.json")
        new.update(cfg.to_dict())
        new.setdefault("resumed", []).append({"step": step, "changes": changes})
        write_json(run_dir / "config.json", new)
        Stats(run_dir / "stats.jsonl").truncate_after(step)
        return run_dir, metrics

    _, metrics = on_main(start, d)
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


def _fit(cfg: TrainConfig, data: TrainData, run_dir: Path, d: Dist, *, checkpoint: dict | None = None,
         metrics: "PeriodicMetrics | None" = None, progress: bool = True) -> Path:
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
        with StopAfterStep() as stop:
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
