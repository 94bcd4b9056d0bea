"""`gan train`: a thin click command over gan.train.train / gan.train.resume (torch loads lazily)."""
from __future__ import annotations

import math
from pathlib import Path

import click
from click.core import ParameterSource

from .config import FID_N_MIN, PRESETS, SEED
from .losses import LOSSES

# option name -> TrainConfig field; None means "keep the preset's (or the resumed run's) value"
_OVERRIDES = {
    "steps": "steps", "batch": "batch", "size": "size", "seed": "seed", "lr": None, "loss": "loss",
    "ema": "ema", "diffaug": "diffaug", "spectral_norm": "spectral_norm", "precision": "precision",
    "channels_last": "channels_last", "cuda_graph": "cuda_graph", "compile": "compile",
    "fid_every": "fid_every", "fid_n": "fid_n", "log_every": "log_every", "sample_every": "sample_every",
    "ckpt_every": "ckpt_every", "name": "name",
}


def _positive_finite(ctx, param, value):
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{value} is not a finite number > 0")
    return value


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Curated manifest; its pack is built (preprocess) when missing or stale.")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A packed uint8 (N, size, size, 3) .npy instead of a manifest.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="seed", show_default=True,
              help="Starting configuration (seed = the blog's recipe); the options below override it.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True,
              help="Parent folder of the numbered run directories.")
@click.option("--resume", "resume_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Continue this run directory from its checkpoint (same step, same next batch); "
                   "not with --preset or --out.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--steps", type=click.IntRange(min=0), help=f"Training steps (seed: {SEED.steps:,}).")
@click.option("--batch", type=click.IntRange(min=2), help=f"Global batch size (seed: {SEED.batch}).")
@click.option("--size", type=click.IntRange(min=16), help=f"Image size, a power of two >= 16 (seed: {SEED.size}).")
@click.option("--seed", type=int, help="Random seed (init, batches, noise, augmentation).")
@click.option("--lr", type=float, callback=_positive_finite, help=f"Adam lr for G and D, > 0 (seed: {SEED.lr_g}).")
@click.option("--loss", type=click.Choice(sorted(LOSSES)), help="GAN loss (seed: ralsgan).")
@click.option("--ema/--no-ema", default=None, help="Keep an EMA generator (used for samples, FID, generate).")
@click.option("--diffaug", help='DiffAugment policy, e.g. "color,translation,cutout" ("" = off).')
@click.option("--spectral-norm/--no-spectral-norm", default=None, help="Spectral norm in D (drops D's BatchNorm).")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), help="fp32 or bf16 autocast.")
@click.option("--channels-last/--no-channels-last", default=None, help="NHWC memory layout.")
@click.option("--cuda-graph/--no-cuda-graph", default=None, help="Capture the whole step in one CUDA graph.")
@click.option("--compile/--no-compile", default=None, help="torch.compile G and D (not with --cuda-graph).")
@click.option("--fid-every", type=click.IntRange(min=0), help="Evaluate FID/KID (or the weightless metrics) every K steps.")
@click.option("--fid-n", type=click.IntRange(min=FID_N_MIN), help="Generated images per evaluation.")
@click.option("--inception-weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Local TF-Inception weights for --fid-every (pt_inception-2015-12-05 .pth).")
@click.option("--log-every", type=click.IntRange(min=1), help="Steps between stats.jsonl records.")
@click.option("--sample-every", type=click.IntRange(min=0), help="Steps between sample grids (0 = end only).")
@click.option("--ckpt-every", type=click.IntRange(min=0), help="Steps between checkpoints (0 = end only).")
@click.option("--name", help="Run name (the part after the number); default: the preset's.")
@click.option("--progress/--no-progress", default=True, help="Show the progress bar.")
def train(manifest, data, preset, out, resume_dir, device, inception_weights, progress, **opts):
    """Train the RaLSGAN on a manifest's packed images, in a new numbered run directory.

    Writes OUT/NNNNN-NAME/ with config.json, stats.jsonl, sample grids, loss.png and checkpoint.pt.

    \b
    Examples:
      gan train --manifest work/clean.parquet --preset seed
      gan train --data pack.npy --preset improved --fid-every 5000 --inception-weights pt_inception.pth
      gan train --resume runs/00003-seed --steps 150000
    """
    from . import train as T

    if resume_dir is not None:  # the run keeps its own preset and folder: say so rather than ignore them
        ctx = click.get_current_context()
        given = [f"--{n}" for n in ("preset", "out") if ctx.get_parameter_source(n) is not ParameterSource.DEFAULT]
        if given:
            raise click.UsageError(f"{' and '.join(given)} cannot be used with --resume (a resumed run keeps its "
                                   "own configuration and folder; change single options such as --steps instead)")
    changes = {}
    for opt, value in opts.items():
        if value is None:
            continue
        if opt == "lr":
            changes.update(lr_g=value, lr_d=value)
        else:
            changes[_OVERRIDES[opt]] = value
    if resume_dir is not None:
        run = T.resume(resume_dir, overrides=changes, data=data, manifest=manifest, device=device,
                       inception_weights=inception_weights, progress=progress)
    else:
        if manifest is None and data is None:
            raise click.UsageError("give --manifest MANIFEST.parquet or --data PACK.npy (or --resume RUN_DIR)")
        cfg = PRESETS[preset].replace(**changes)
        run = T.train(cfg, data=data, manifest=manifest, out=out, device=device,
                      inception_weights=inception_weights, progress=progress)
    click.echo(str(run))


def main(argv=None):
    """Entry point for `python -m gan.train_cli` (torchrun); needs only torch, click and tqdm."""
    from common.clitools import run_main, setup_logging

    setup_logging(1)
    run_main(train, "gan train", argv)


if __name__ == "__main__":
    main()
