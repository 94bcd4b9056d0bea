"""`curate dedupe`: thin CLI over `curate.dedupe.dedupe_manifest`."""
from __future__ import annotations

from pathlib import Path

import click

from .engine import engine_options
from .dedupe import DedupeOptions
from .hashing import HASHERS

D = DedupeOptions()


@click.command("dedupe", epilog="""\b
Examples:
  curate dedupe --manifest work/manifest.parquet
  curate dedupe --manifest work/manifest.parquet --method dhash --threshold 6
  curate dedupe --manifest work/manifest.parquet --no-mirror --fine-threshold -1 --force
""")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Manifest to mark duplicates in (rewritten in place).")
@click.option("--method", type=click.Choice(sorted(HASHERS)), default=D.method, show_default=True,
              help="Perceptual hash of the sample's crop.")
@click.option("--threshold", type=click.IntRange(0, 32), default=D.threshold, show_default=True,
              help="Largest Hamming distance between 64-bit hashes of near duplicates (search).")
@click.option("--fine-threshold", "fine_threshold", type=click.IntRange(-1, 128),
              default=D.fine_threshold, show_default=True,
              help="Largest distance between the 256-bit hashes of a candidate pair (-1: no check).")
@click.option("--mirror/--no-mirror", default=D.mirror, show_default=True,
              help="Also match left-right flipped copies.")
@click.option("--exact-tol", "exact_tol", type=click.IntRange(0, 32), default=D.exact_tol,
              show_default=True, help="Largest thumbnail difference (0-255) of exact duplicates.")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Processes (default: all cores).")
@click.option("--force", is_flag=True, help="Hash every row again.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@engine_options
def dedupe(manifest, method, threshold, fine_threshold, mirror, exact_tol, workers, force, no_progress):
    """Mark exact and near duplicates; keep the best copy of each group (nothing is deleted)."""
    from .dedupe import dedupe_manifest

    opts = DedupeOptions(method=method, threshold=threshold, fine_threshold=fine_threshold,
                         mirror=mirror, exact_tol=exact_tol, workers=workers, force=force)
    m = dedupe_manifest(manifest, opts, progress=not no_progress)
    dup = m.column("is_duplicate")
    groups = len({g for g in m.column("dup_group") if g is not None})
    dups = sum(v is True for v in dup)
    unhashed = sum(v is None for v in dup)
    click.echo(f"{manifest}: {len(m)} rows, {groups} duplicate group(s), {dups} duplicate(s) marked, "
               f"{unhashed} not hashable")
