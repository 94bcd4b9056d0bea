"""`curate score`: thin CLI over `curate.score.score_manifest` / `curate.score.reflag`."""
from __future__ import annotations

from pathlib import Path

import click

from .engine import engine_options
from .checks import CHECKS
from .score import ScoreOptions

D = ScoreOptions()


def _parse_thresholds(ctx, param, values) -> tuple[tuple[str, float], ...]:
    out = []
    for v in values:
        name, sep, num = v.partition("=")
        if not sep:
            raise click.BadParameter(f"expected NAME=VALUE, got {v!r}", ctx=ctx, param=param)
        if name not in CHECKS:
            raise click.BadParameter(f"unknown check {name!r}; choose from {', '.join(CHECKS)}",
                                     ctx=ctx, param=param)
        try:
            f = float(num)
        except ValueError:
            raise click.BadParameter(f"{name}: {num!r} is not a number", ctx=ctx, param=param) from None
        if not 0.0 <= f <= 1.0:
            raise click.BadParameter(f"{name}: score threshold must be in [0, 1], got {f}",
                                     ctx=ctx, param=param)
        out.append((name, f))
    return tuple(out)


@click.command("score", epilog="""\b
Examples:
  curate score --manifest work/manifest.parquet
  curate score --manifest work/manifest.parquet --threshold busy=0.4 --threshold blur=0.6
  curate score --manifest work/manifest.parquet --rethreshold --threshold busy=0.2   # no image I/O
""")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Manifest to score (rewritten in place).")
@click.option("--threshold", "thresholds", multiple=True, callback=_parse_thresholds,
              metavar="NAME=SCORE",
              help=f"Flag when the check's score >= SCORE (0-1); later runs remember it. Checks: {', '.join(CHECKS)}.")
@click.option("--rethreshold", is_flag=True,
              help="Only recompute the flags of the given --threshold checks from stored scores.")
@click.option("--size", type=click.IntRange(32, 2048), default=D.size, show_default=True,
              help="Longer side (px) the crop is measured at.")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Processes (default: all cores).")
@click.option("--default-thresholds", is_flag=True,
              help="Forget thresholds set on earlier runs (they are remembered in the manifest).")
@click.option("--force", is_flag=True, help="Measure every row again.")
@click.option("--no-hashes", is_flag=True,
              help="Do not also hash each sample for `curate dedupe` (it then decodes them again itself).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@engine_options
def score(manifest, thresholds, rethreshold, size, workers, default_thresholds, force, no_hashes, no_progress):
    """Score every sample's crop: busy background, blur, exposure, small subject, aspect, grey."""
    from common.errors import UserError

    from .score import reflag, score_manifest

    if rethreshold:
        if not thresholds:
            raise UserError("--rethreshold needs at least one --threshold NAME=SCORE")
        if default_thresholds:
            raise UserError("--default-thresholds goes with a plain `curate score`, not --rethreshold")
        m = reflag(manifest, dict(thresholds))
    else:
        m = score_manifest(manifest, ScoreOptions(thresholds=thresholds, size=size, workers=workers,
                                                  force=force, default_thresholds=default_thresholds,
                                                  hashes=not no_hashes),
                           progress=not no_progress)
    params = m.stage_params("score") or {}
    click.echo(f"{manifest}: {len(m)} rows")
    mine = params.get("set_thresholds") or {}
    for name, n in (params.get("flagged") or {}).items():
        note = "  (set by you; --default-thresholds forgets it)" if name in mine else ""
        th = params["thresholds"][name]
        shown = f"{th:.2f}" if round(th, 2) == th else f"{th:g}"     # 0.365 is not shown as 0.36
        click.echo(f"  {name:<8s} threshold {shown}  flagged {n}{note}")
    if params.get("errors"):
        click.echo(f"  {params['errors']} row(s) could not be measured (score_error): filter rejects them")
