"""`gan generate`: N RGB PNGs from a checkpoint (torch loads only when the command runs)."""
from __future__ import annotations

from pathlib import Path

import click

from .config import GenerateOptions

_D = GenerateOptions()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--checkpoint", "-c", required=True, type=click.Path(exists=True, path_type=Path),
              help="A checkpoint.pt, or a run directory holding one.")
@click.option("--n", type=click.IntRange(min=1), default=_D.n, show_default=True, help="Number of images.")
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
              help="Output folder (or .zip file with --zip); checked before any work.")
@click.option("--zip/--no-zip", "as_zip", default=_D.zip, show_default=True,
              help="Write one zip (OUT/images.zip, or OUT when it ends in .zip) instead of loose PNGs.")
@click.option("--seed", type=int, default=_D.seed, show_default=True, help="Noise seed.")
@click.option("--device", default=_D.device, show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--ema/--no-ema", default=_D.ema, show_default=True, help="Use the EMA generator when the checkpoint has one.")
@click.option("--progress/--no-progress", default=True, help="Show the progress bar.")
def generate(checkpoint, n, out, as_zip, seed, device, ema, progress):
    """Generate N RGB PNGs (the run's image size, 128x128 for the seed preset) from a checkpoint.

    Image i depends only on the checkpoint, --ema and --seed: the generator runs with BatchNorm
    batch statistics on chunks of 64 noise vectors drawn from one seeded stream, so --n 10 gives
    the first 10 images of --n 10000. Into a folder, running the same command
    again (after Ctrl-C) writes only the missing PNGs; OUT/generate.json records what made them.

    \b
    Examples:
      gan generate --checkpoint runs/00000-seed/checkpoint.pt --n 10000 -o out/
      gan generate -c runs/00000-seed --n 10000 -o submission.zip --zip
    """
    from .generate import generate as run

    opts = GenerateOptions(n=n, seed=seed, zip=as_zip, device=device, ema=ema)
    click.echo(str(run(checkpoint, out, opts, progress=progress)))
