"""`curate scan DIR -o manifest.parquet`: a thin CLI over `curate.scan.scan_folder`."""
from __future__ import annotations

from pathlib import Path

import click

from .engine import engine_options
from .scan import DEFAULT_MAX_PIXELS, ScanOptions

_D = ScanOptions()
DEFAULT_MANIFEST = Path("work") / "manifest.parquet"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("folder", type=click.Path())   # a str: an s3:// URI must keep its //
@click.option("-o", "--output", "output", type=click.Path(path_type=Path), default=DEFAULT_MANIFEST,
              show_default=True, help="Manifest to create, or to update when it exists.")
@click.option("-w", "--workers", type=int, default=None,
              help="Worker processes (default: one per available core).")
@click.option("--max-pixels", type=int, default=None,
              help="Declared width*height above which a file is too_large and never decoded  "
                   f"[default: the last scan's limit, else {DEFAULT_MAX_PIXELS}].")
@click.option("--rehash/--no-rehash", default=_D.rehash, show_default=True,
              help="On a rescan, hash files whose size and mtime are unchanged and rescan "
                   "those whose sha256 differs.")
@click.option("--checkpoint-every", type=int, default=_D.checkpoint_every, show_default=True,
              help="Rewrite the manifest after this many files, so an interrupted scan resumes.")
@click.option("--checkpoint-seconds", type=float, default=_D.checkpoint_seconds, show_default=True,
              help="... or after this many seconds, whichever comes first.")
@click.option("--follow-links/--no-follow-links", default=None,
              help="Follow symlinks that lead outside FOLDER (default: no, they get a row with status "
                   "outside_folder; a later scan remembers the choice).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@engine_options
def scan(folder, output, workers, max_pixels, rehash, checkpoint_every, checkpoint_seconds, follow_links,
         no_progress):
    """Inventory every file under FOLDER into a Parquet manifest (one row per file).

    Each file gets a status (ok, truncated, corrupt, not_an_image, unsupported,
    too_large, unreadable, empty, outside_folder: a symlink out of FOLDER, not followed) and,
    when not ok, the error text. Running it again
    skips unchanged files, adds new ones and marks vanished ones; a killed scan
    resumes. Put `--` before a FOLDER whose name starts with `-`.

    \b
    Examples:
      curate scan ./photos -o work/manifest.parquet
      curate scan ./photos -o work/manifest.parquet --workers 2 --rehash
      curate scan -o work/manifest.parquet -- -odd-folder-name
      curate scan s3://bucket/photos -o work/manifest.parquet   # mirrored into work/cache/inputs/
    """
    from collections import Counter

    from .scan import scan_folder

    opts = ScanOptions(max_pixels=max_pixels, rehash=rehash, checkpoint_every=checkpoint_every,
                       checkpoint_seconds=checkpoint_seconds, follow_links=follow_links)
    m = scan_folder(folder, output, opts, workers=workers, progress=not no_progress)
    counts = Counter(r["status"] for r in m.records(["crop_index", "status"]) if r["crop_index"] == 0)
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    click.echo(f"{sum(counts.values())} files -> {output} ({summary})")
