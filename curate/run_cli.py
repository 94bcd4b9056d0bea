"""`curate run FOLDER -o WORK`: the whole curation job."""
from pathlib import Path

import click

from .engine import engine_options
from .pipeline import RunOptions

D = RunOptions()


@click.command("run")
@click.argument("folder", type=click.Path())   # a str: an s3:// URI must keep its //
@click.option("-o", "--out", "workdir", type=click.Path(path_type=Path), default=Path("work"),
              show_default=True, help="Work folder: manifest, cache, clean.parquet, report.")
@click.option("--weights", default=D.weights, show_default=True,
              help="YOLO weights: a name ultralytics downloads when online, or a local file.")
@click.option("--device", default=D.device, show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--workers", type=click.IntRange(1, 256), default=None, help="Processes (default: all cores).")
@click.option("--per-image", type=click.Choice(["primary", "all"]), default=D.per_image, show_default=True,
              help="One sample per photo (its main motorbike) or one per motorbike.")
@click.option("--far-look", "far_look", type=click.FloatRange(0, 4), default=D.far_look, show_default=True,
              help="Detect: where no motorbike is found in a thumbnail (<= 200 px), a third look with the "
                   "photo framed this far out (1.0 finds most missed 100 px thumbnails; 0: off).")
@click.option("--follow-links/--no-follow-links", default=None,
              help="Follow symlinks that lead outside FOLDER (default: no; they get a row with status outside_folder).")
@click.option("--embed", type=click.Choice(["auto", "stats"]), default=D.embed, show_default=True,
              help="Embeddings for the odd bikes and clusters: auto = the detector's own backbone (a .pt or "
                   ".tflite), else the weightless statistics; stats = always the statistics.")
@click.option("--no-report", is_flag=True, help="Skip the HTML report.")
@engine_options
def run(folder, workdir, weights, device, workers, per_image, far_look, follow_links, embed, no_report):
    """Scan, repair, detect, score, dedupe, embed, filter and cluster FOLDER, resuming what is done.

    Review is a separate, optional step afterwards: `curate review`, then `curate filter` again.
    Put `--` before a FOLDER whose name starts with `-` (after the options).

    \b
    Examples:
      curate run ./photos -o work/
      curate run ./photos -o work/ --weights ~/models/yolo11n.pt --device cpu
      curate run -o work/ -- -odd-name-folder
      curate run s3://bucket/photos -o work/     # any pyarrow filesystem URI, mirrored into work/cache/
    """
    from .pipeline import run_pipeline

    opts = RunOptions(weights=weights, device=device, workers=workers, per_image=per_image, far_look=far_look,
                      report=not no_report, follow_links=follow_links, embed=embed)
    res = run_pipeline(folder, workdir, opts)
    width = max(len(k) for k, _ in res.summary_rows())
    click.echo("")
    for k, v in res.summary_rows():
        click.echo(f"  {k:<{width}}  {v:>7}")
    click.echo("")
    click.echo(f"manifest: {res.manifest}")
    click.echo(f"clean:    {res.clean}")
    if res.report:
        click.echo(f"report:   {res.report}")
