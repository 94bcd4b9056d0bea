"""`curate review --manifest M`: look at the samples in the FiftyOne App and tag them keep/reject."""
from pathlib import Path

import click

from .review import ReviewOptions

D = ReviewOptions()


@click.command("review")
@click.option("--manifest", "manifest_path", required=True, type=click.Path(path_type=Path),
              help="The manifest to review (its FiftyOne dataset is named after it).")
@click.option("--port", type=click.IntRange(1, 65535), default=D.port, show_default=True,
              help="Port the App serves on.")
@click.option("--address", default=D.address, show_default=True,
              help="Address the App binds to (keep 127.0.0.1 unless you know why; use ssh -L to reach it).")
@click.option("--pull", is_flag=True,
              help="Only write the decisions already tagged in the App back into the manifest.")
@click.option("--no-launch", is_flag=True, help="Build/update the FiftyOne dataset, do not start the App.")
def review(manifest_path, port, address, pull, no_launch):
    """Review samples in the FiftyOne App; tag them `reject` or `keep`.

    Builds (or updates) a persistent FiftyOne dataset with one sample per manifest row: the crop
    with its detections, every score and flag, the duplicate group, the status, and a saved view
    per automatic reject reason. Tags are stored as you make them; closing the App tab, Ctrl-C or
    `--pull` writes them into the manifest. A `keep` tag overrides the automatic rules in
    `curate filter`; a `reject` tag removes the sample.

    \b
    Examples:
      curate review --manifest work/manifest.parquet
      curate review --manifest work/manifest.parquet --port 5252 --no-launch
      curate review --manifest work/manifest.parquet --pull && curate filter --manifest work/manifest.parquet
    """
    from . import review as rv

    if not Path(manifest_path).exists():
        from common.errors import UserError

        raise UserError(f"--manifest {manifest_path}: not found")
    if pull:
        n = rv.pull_decisions(manifest_path)
        click.echo(f"{n} decision(s) in {manifest_path}")
        return
    opts = ReviewOptions(port=port, address=address)
    if no_launch:
        ds = rv.build_dataset(manifest_path)
        click.echo(f"FiftyOne dataset {ds.name}: {len(ds)} samples; saved views: "
                   f"{', '.join(ds.list_saved_views()) or '-'}")
        return

    def ready(url):
        click.echo(f"\nReview at {url}  (tag samples `reject` or `keep`; close the tab or press "
                   "Ctrl-C to finish)", err=False)

    n = rv.serve(manifest_path, opts, on_ready=ready)
    click.echo(f"{n} decision(s) written to {manifest_path}")
