"""`curate text --manifest M`: a thin CLI over `curate.text.text_manifest`."""
from __future__ import annotations

from pathlib import Path

import click

from .engine import engine_options


@click.command("text", epilog="""\b
Examples:
  curate text --manifest work/manifest.parquet
  curate score --manifest work/manifest.parquet     # the `text` check reads what it measured
""")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Manifest to measure (rewritten in place).")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Processes (one text detector each).")
@click.option("--force", is_flag=True, help="Measure every row again.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@engine_options
def text(manifest, workers, force, no_progress):
    """How much of each photo is text (headlines, banners, price tags), for the `text` check."""
    from common.errors import UserError

    from .checks import TEXT_SHARE
    from .text import TextOptions, available, text_manifest

    if not manifest.exists():
        raise UserError(f"--manifest {manifest}: no such file")
    if not available():
        raise UserError("curate text needs the text detector: pip install 'motocurate[curate]' (rapidocr, onnxruntime)")
    m = text_manifest(manifest, TextOptions(workers=workers, force=force), progress=not no_progress)
    p = m.stage_params("text") or {}
    flagged = int((m.df["text_share"].astype("Float64") >= TEXT_SHARE).fillna(False).sum())
    click.echo(f"{manifest}: {p.get('measured', 0)} of {len(m.df)} rows measured with {p.get('detector')}; "
               f"{flagged} with text over >= {TEXT_SHARE:.0%} of the photo (the text check's default)")
