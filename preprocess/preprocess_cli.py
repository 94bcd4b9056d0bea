"""`preprocess --manifest clean.parquet`: square training images packed for the trainer."""
from pathlib import Path

import click

from .pack import SIZE_RANGE, PrepOptions
from .square import FILLS, MODES, RESAMPLE

D = PrepOptions()


@click.command("preprocess", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--manifest", "manifest", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Manifest to pack (usually clean.parquet from `curate filter`); it gets the "
                   "pack_index/prep_status columns.")
@click.option("--size", type=click.IntRange(*SIZE_RANGE), default=D.size, show_default=True,
              help="Side of the square images in pixels.")
@click.option("--mode", type=click.Choice(list(MODES)), default=D.mode, show_default=True,
              help="pad: keep the aspect ratio and fill the borders; resize: stretch; crop: centre square.")
@click.option("--fill", type=click.Choice(FILLS), default=D.fill, show_default=True,
              help="Border colour for --mode pad (black as in the blog; edge smears, reflect mirrors).")
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for the pack  [default: <manifest folder>/pack]")
@click.option("--png", is_flag=True, help="Also write one PNG per sample (for people and FID tools).")
@click.option("--max-upscale", type=click.FloatRange(min=1.0), default=D.max_upscale, show_default=True,
              help="Largest enlargement allowed; smaller samples are flagged too_small and left out.")
@click.option("--resample", type=click.Choice(list(RESAMPLE)), default=D.resample, show_default=True,
              help="Antialiasing filter used to scale.")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Processes (default: all cores); the pack is the same for any number.")
@click.option("--force", is_flag=True, help="Rebuild even when the pack is up to date.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def preprocess_cmd(manifest, size, mode, fill, out_dir, png, max_upscale, resample, workers, force, verbose):
    """Make every kept sample square (pad, resize or crop), scale it with antialiasing and pack
    them into one uint8 array (N, SIZE, SIZE, 3) `.npy` with the sample_id order in a `.json`
    beside it. The pack is rebuilt only when the samples or the parameters changed.

    \b
    Examples:
      preprocess --manifest work/clean.parquet
      preprocess --manifest work/clean.parquet --size 64 --mode pad --fill edge --png -o work/pack64
      preprocess --manifest work/clean.parquet --mode crop --max-upscale 1.5 --force
    """
    from common.clitools import setup_logging
    from common.errors import UserError

    from .pack import ensure_pack, preprocess_manifest

    setup_logging(verbose)
    if not manifest.is_file():
        raise UserError(f"--manifest {manifest}: no such file")
    opts = PrepOptions(size=size, mode=mode, fill=fill, max_upscale=max_upscale, resample=resample,
                       png=png, workers=workers)
    build = preprocess_manifest if force else ensure_pack
    info = build(manifest, opts, out_dir)
    state = "built" if info.rebuilt else "up to date"
    counts = ", ".join(f"{k} {v}" for k, v in info.counts.items() if v)
    click.echo(f"pack {state}: {info.n} images {info.size}x{info.size} ({counts})")
    click.echo(f"pack:     {info.npy_path}")
    click.echo(f"ids:      {info.ids_path}")
    if info.png_dir:
        click.echo(f"png:      {info.png_dir}")
