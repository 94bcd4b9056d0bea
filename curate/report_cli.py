"""`curate report --manifest M -o report/`: an HTML page with contact sheets and score histograms."""
from pathlib import Path

import click

from .report import ReportOptions

D = ReportOptions()


@click.command("report")
@click.option("--manifest", "manifest_path", required=True, type=click.Path(path_type=Path),
              help="The manifest to show (after `curate filter`, or the default rules are applied).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder for index.html and its PNGs.  [default: report/ beside the manifest]")
@click.option("--per-sheet", type=click.IntRange(1, 10000), default=D.per_sheet, show_default=True,
              help="Most samples on one contact sheet.")
@click.option("--tile", type=click.IntRange(32, 512), default=D.tile, show_default=True,
              help="Thumbnail size in pixels.")
@click.option("--seed", type=int, default=D.seed, show_default=True,
              help="Which samples a capped contact sheet shows.")
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A person's labels (CSV path,label[,note]; paths under the scanned folder): agreement shown.")
def report(manifest_path, out_dir, per_sheet, tile, seed, labels):
    """Write an HTML report (index.html and its PNGs, in one folder): counts, contact sheets of kept and rejected samples, score histograms.

    \b
    Examples:
      curate report --manifest work/manifest.parquet -o work/report/
      curate report --manifest work/manifest.parquet --per-sheet 200 --tile 96
    """
    from .report import write_report

    out_dir = out_dir if out_dir is not None else Path(manifest_path).parent / "report"
    index = write_report(manifest_path, out_dir, ReportOptions(per_sheet=per_sheet, tile=tile, seed=seed,
                                                                      labels=labels))
    click.echo(f"report: {index}")
