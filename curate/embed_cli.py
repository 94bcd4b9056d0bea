"""`curate embed --manifest M`: a thin CLI over `curate.embed.embed_manifest`."""
from __future__ import annotations

from pathlib import Path

import click

from .embed import EmbedOptions
from .embeddings import BACKENDS
from .engine import engine_options

D = EmbedOptions()


@click.command("embed", epilog="""\b
Examples:
  curate embed --manifest work/manifest.parquet                      # weightless statistics
  curate embed --manifest work/manifest.parquet --backend ultralytics --weights ~/models/yolo11n.pt
  curate embed --manifest work/manifest.parquet --backend tflite --weights yolov8n_int8.tflite
""")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Manifest to embed (rewritten in place).")
@click.option("--backend", type=click.Choice(list(BACKENDS)), default=D.backend, show_default=True,
              help="; ".join(f"{b.name}: {b.doc}" for b in BACKENDS.values()))
@click.option("--weights", default=None, help="--backend ultralytics: a YOLO .pt file (or a model .yaml); --backend tflite: a .tflite export.")
@click.option("--size", type=int, default=None,
              help="Size the crop is embedded at (px): the stats backend's longer side (default 128), a model's "
                   "square (default 384; tflite: a multiple of 32).")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Processes (stats backend; the others run one model in this process).")
@click.option("--force", is_flag=True, help="Embed every row again.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@engine_options
def embed(manifest, backend, weights, size, workers, force, no_progress):
    """One embedding per sample crop, for outliers, clusters and "more like this" in review."""
    from common.errors import UserError

    from .embed import embed_manifest

    if not manifest.exists():
        raise UserError(f"--manifest {manifest}: no such file")
    m = embed_manifest(manifest, EmbedOptions(backend=backend, weights=weights, size=size, workers=workers,
                                              force=force), progress=not no_progress)
    p = m.stage_params("embed") or {}
    click.echo(f"{manifest}: {p.get('embedded', 0)} of {len(m.df)} rows embedded with {p.get('label')} "
               f"({', '.join(map(str, p.get('dims') or [])) or '-'} dims)")
