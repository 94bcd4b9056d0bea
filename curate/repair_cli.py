"""`curate repair --manifest m.parquet`: a thin CLI over `curate.repair.repair_manifest`."""
from __future__ import annotations

from pathlib import Path

import click

from .engine import engine_options
from .repair import RepairOptions

_D = RepairOptions()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-m", "--manifest", type=click.Path(path_type=Path),
              default=Path("work") / "manifest.parquet", show_default=True,
              help="Manifest made by `curate scan` (updated in place).")
@click.option("-w", "--workers", type=int, default=None,
              help="Worker processes (default: one per available core).")
@click.option("--background", default=_D.background, show_default=True,
              help="Colour transparent pixels are composited on.")
@click.option("--min-recovered", type=float, default=_D.min_recovered, show_default=True,
              help="Share of rows a truncated file must keep to count as recovered (0..1).")
@click.option("--max-frames", type=int, default=_D.max_frames, show_default=True,
              help="Frames scored per animation (evenly spaced beyond this).")
@click.option("--icc/--no-icc", "icc_to_srgb", default=_D.icc_to_srgb, show_default=True,
              help="Convert embedded non-sRGB ICC profiles to sRGB.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@engine_options
def repair(manifest, workers, background, min_recovered, max_frames, icc_to_srgb, no_progress):
    """Write normalised RGB copies of the files that need one; record what was done.

    Copies go to `cache/repaired/` beside the manifest (never over the originals):
    the best frame of animations, what survives of truncated files, and RGB
    conversions (CMYK, palette, transparency, 16-bit, grey, EXIF orientation, ICC).
    Files that are fine are not copied. Re-running skips rows already repaired
    with the same options.

    \b
    Examples:
      curate repair --manifest work/manifest.parquet
      curate repair -m work/manifest.parquet --background '#808080' --min-recovered 0.6
      curate repair -m work/manifest.parquet --workers 1 --no-icc
    """
    from collections import Counter

    from .repair import repair_manifest

    opts = RepairOptions(background=background, min_recovered=min_recovered,
                         max_frames=max_frames, icc_to_srgb=icc_to_srgb)
    m = repair_manifest(manifest, opts, workers=workers, progress=not no_progress)
    counts = Counter(r["repair_action"] for r in m.records(["crop_index", "repair_action"])
                     if r["crop_index"] == 0 and r["repair_action"] is not None)
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    click.echo(f"{sum(counts.values())} files -> {manifest} ({summary})")
