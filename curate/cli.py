"""`curate`: a thin CLI over the curate stages (each subcommand lives with its stage)."""
import click

from common.clitools import LazyGroup, run_main, setup_logging

COMMANDS = {
    "scan": "curate.scan_cli:scan",
    "repair": "curate.repair_cli:repair",
    "detect": "curate.detect_cli:detect",
    "dedupe": "curate.dedupe_cli:dedupe",
    "score": "curate.score_cli:score",
    "embed": "curate.embed_cli:embed",
    "text": "curate.text_cli:text",
    "cluster": "curate.cluster_cli:cluster",
    "review": "curate.review_cli:review",
    "filter": "curate.filter_cli:filter_cmd",
    "calibrate": "curate.calibrate_cli:calibrate",
    "report": "curate.report_cli:report",
    "run": "curate.run_cli:run",
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose):
    """Turn a messy folder of photos into a clean, reviewed training manifest.

    \b
    Examples:
      curate run ./photos -o work/
      curate detect ./photos
      curate filter --manifest work/manifest.parquet -o work/clean.parquet
    """
    setup_logging(verbose)


def main(argv=None):
    run_main(cli, "curate", argv)
