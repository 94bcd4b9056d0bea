"""`curate calibrate`: thin CLI over `curate.calibrate.calibrate_manifest`."""
from __future__ import annotations

from pathlib import Path

import click

from .calibrate import MIN_TAGS


@click.command("calibrate", epilog="""\b
Examples:
  curate review --manifest work/manifest.parquet        # tag a few hundred samples keep / reject
  curate calibrate --manifest work/manifest.parquet --dry-run
  curate calibrate --manifest work/manifest.parquet && curate filter --manifest work/manifest.parquet
""")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Scored manifest whose samples you tagged in `curate review`.")
@click.option("--dry-run", is_flag=True, help="Show the fitted thresholds and agreement; write nothing.")
@click.option("--min-tags", type=click.IntRange(2, None), default=MIN_TAGS, show_default=True,
              help="Refuse to fit on fewer tagged samples.")
def calibrate(manifest, dry_run, min_tags):
    """Fit the score thresholds to your own keep/reject tags (stored scores only, no image I/O)."""
    from .calibrate import calibrate_manifest, format_calibration

    cal = calibrate_manifest(manifest, dry_run=dry_run, min_tags=min_tags)
    click.echo(format_calibration(cal))
    if not cal.thresholds:
        click.echo("no threshold moved: the current ones agree with your tags as well as any")
    elif dry_run:
        click.echo("dry run: nothing written; " + ", ".join(f"{k}={v:g}" for k, v in cal.thresholds.items()))
    else:
        click.echo("recorded " + ", ".join(f"{k}={v:g}" for k, v in cal.thresholds.items())
                   + f"; now run: curate filter --manifest {manifest}")
