"""What the three CLIs share: lazy subcommands, logging set-up, UserError -> one line, exit 2."""
from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import click

from .errors import UserError


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when run (heavy libraries stay unloaded).

    `lazy` maps a command name to "module:attribute".
    """

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx):
        present = {n for n, target in self.lazy.items()
                   if importlib.util.find_spec(target.split(":")[0]) is not None}
        return sorted({*super().list_commands(ctx), *present})

    def get_command(self, ctx, name):
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


def setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def run_main(group: click.Group, prog: str, argv=None) -> None:
    """Run a click group; a UserError (or click usage error) is one line on stderr and exit code 2."""
    try:
        group.main(args=argv, prog_name=prog, standalone_mode=False)
    except UserError as exc:
        click.echo(f"{prog}: error: {' '.join(str(exc).split())}", err=True)  # one line, whatever the cause said
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo(f"{prog}: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"{prog}: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code if exc.exit_code != 1 else 2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
