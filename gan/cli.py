"""`gan`: train a RaLSGAN on a manifest, generate PNGs, compute FID/KID/MiFID."""
import click

from common.clitools import LazyGroup, run_main, setup_logging

COMMANDS = {
    "train": "gan.train_cli:train",
    "generate": "gan.generate_cli:generate",
    "fid": "gan.fid_cli:fid",
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose):
    """Train a RaLSGAN on a curated manifest and measure what it makes.

    \b
    Examples:
      gan train --manifest work/clean.parquet --preset seed
      gan generate --checkpoint runs/00000-seed/checkpoint.pt --n 10000 -o out/ --zip
      gan fid --generated out/ --manifest work/clean.parquet
    """
    setup_logging(verbose)


def main(argv=None):
    run_main(cli, "gan", argv)
