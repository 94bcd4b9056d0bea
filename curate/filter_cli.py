"""`curate filter --manifest M -o clean.parquet`: apply the rules and the reviewer's tags."""
from pathlib import Path

import click

from .checks import CHECKS
from .filter import RULES, FilterOptions

D = FilterOptions()


def _rules_help() -> str:
    names = [*RULES, *CHECKS]
    return ", ".join(names) + " (score checks: one rule per <check>_flag column)"


@click.command("filter")
@click.option("--manifest", "manifest_path", required=True, type=click.Path(path_type=Path),
              help="The manifest to filter; it gets `keep` and `reject_reason` columns.")
@click.option("-o", "--out", "out_path", type=click.Path(path_type=Path), default=None,
              help="Where the kept rows go.  [default: clean.parquet beside the manifest]")
@click.option("--no-rule", "disabled", multiple=True, metavar="NAME",
              help=f"Ignore a rule (repeatable): {_rules_help()}.")
@click.option("--ignore-review", is_flag=True, default=not D.use_review,
              help="Apply the automatic rules only, not the reviewer's keep/reject tags.")
@click.option("--list-rules", is_flag=True, help="List the rules that apply to this manifest and exit.")
def filter_cmd(manifest_path, out_path, disabled, ignore_review, list_rules):
    """Decide keep/reject for every sample and write the kept ones to a clean manifest.

    Automatic rules (unreadable file, no motorbike, duplicates, score flags, ...) reject
    samples; a reviewer's `keep` tag (curate review) restores one, a `reject` tag removes it.
    Prints how many samples each reason removed.

    \b
    Examples:
      curate filter --manifest work/manifest.parquet -o work/clean.parquet
      curate filter --manifest work/manifest.parquet --no-rule busy --no-rule cut_off
      curate filter --manifest work/manifest.parquet --list-rules
    """
    from manifests import read_manifest

    from .filter import filter_manifest, titles

    if list_rules:
        cols = read_manifest(manifest_path).df.columns
        for name, title in titles(cols).items():
            click.echo(f"  {name:<16} {title}")
        return
    opts = FilterOptions(disabled=tuple(disabled), use_review=not ignore_review)
    res = filter_manifest(manifest_path, out_path, opts)
    rows = res.table_rows(titles(read_manifest(manifest_path).df.columns))
    width = max(len(k) for k, _ in rows)
    click.echo("")
    for k, v in rows:
        click.echo(f"  {k:<{width}}  {v:>7}")
    click.echo("")
    click.echo(f"clean: {res.out_path}  ({res.kept} of {res.total} samples)")
