"""`preprocess`: square 128x128 training images, packed for the trainer."""
from common.clitools import run_main


def main(argv=None):
    from .preprocess_cli import preprocess_cmd

    run_main(preprocess_cmd, "preprocess", argv)
