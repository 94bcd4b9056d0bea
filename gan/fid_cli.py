"""`gan fid`: FID/KID/MiFID (and the weightless metrics) of generated PNGs against the real images.

Real images come from a manifest's pack (`preprocess.pack.ensure_pack`, built when missing or stale;
reference features cached under `<manifest folder>/cache/fid/`, keyed by the pack's content fingerprint
and the Inception weights' sha256) or from `--real` (a folder of images or a uint8 (N, H, W, 3) `.npy`).
Heavy libraries (torch, PIL, the manifest readers) load only when the command runs.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from common.atomic import write_text_atomic

from .evaluation import DEFAULT_BATCH
from .metrics import DEFAULT_METRICS, METRICS, WEIGHTLESS, EvalOptions


_D = EvalOptions()


def format_table(values: dict[str, float]) -> str:
    rows = []
    for k, v in values.items():
        if k.endswith("_std") or k.startswith("n_"):
            continue
        s = f"{v:.6g}" if isinstance(v, float) else str(v)
        if f"{k}_std" in values:
            s += f" ± {values[k + '_std']:.3g}"
        rows.append((k, s))
    w = max([len(k) for k, _ in rows] + [6])
    return "\n".join([f"{'metric':<{w}}  value", *(f"{k:<{w}}  {s}" for k, s in rows)])


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", suffix=".json", prefix=".tmp-")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--generated", "-g", required=True, type=click.Path(exists=True, path_type=Path),
              help="Folder of generated PNGs (or of .zip files), or one .zip.")
@click.option("--manifest", "-m", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Compare with this manifest's kept samples (its pack, built when missing or stale).")
@click.option("--real", "-r", type=click.Path(exists=True, path_type=Path),
              help="Or compare with a folder of images / a .zip / a uint8 (N,H,W,3) .npy.")
@click.option("--inception-weights", "inception_weights", default=None,
              help="FID Inception weights (weights-inception-2015-12-05-6726825d.pth or pytorch-fid's "
                   "pt_inception-2015-12-05-6726825d.pth). Default: the torch hub cache, else download when "
                   "online. 'random' = random-init network, for testing only.")
@click.option("--metrics", "metrics_spec", default=None,
              help=f"Comma-separated, from: {','.join([*METRICS, *WEIGHTLESS])}. "
                   f"[default: {','.join(DEFAULT_METRICS)}]")
@click.option("--weightless", is_flag=True,
              help=f"Add the metrics that need no pretrained weights ({','.join(WEIGHTLESS)}); alone, only those.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch", type=click.IntRange(min=1), default=DEFAULT_BATCH, show_default=True,
              help="Images per Inception forward pass (does not change the result).")
@click.option("--size", type=click.IntRange(min=8), default=None,
              help="With --manifest: pack side in pixels [default: the generated images' size].")
@click.option("--kid-subsets", type=click.IntRange(min=1), default=_D.kid_subsets, show_default=True,
              help="KID: number of random subsets.")
@click.option("--kid-subset-size", type=click.IntRange(min=2), default=_D.kid_subset_size, show_default=True,
              help="KID: images per subset (capped at the smaller set).")
@click.option("--seed", type=int, default=_D.seed, show_default=True, help="Seed for KID subsets and the weightless metrics.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Reference-statistics cache [default with --manifest: <manifest folder>/cache/fid].")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the results as JSON here.")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
def fid(generated, manifest, real, inception_weights, metrics_spec, weightless, device, batch, size,
        kid_subsets, kid_subset_size, seed, cache_dir, out, progress):
    """Score generated images against the real ones: FID, KID, MiFID; --weightless for C2ST + memorisation.

    \b
    Offline, the FID Inception weights must be a local file: download
      https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth
    elsewhere, then pass --inception-weights PATH or put the file in
    $TORCH_HOME/hub/checkpoints/ (default ~/.cache/torch/hub/checkpoints/).

    \b
    Examples:
      gan fid --generated out/ --manifest work/clean.parquet -o fid.json
      gan fid -g out/images.zip --real pack.npy --inception-weights weights-inception-2015-12-05-6726825d.pth
      gan fid -g out/ --manifest work/clean.parquet --weightless
    """
    from common.outpaths import check_out_file

    from .evaluation import evaluate_generated

    if out is not None:
        check_out_file(out, "-o")
    results, record = evaluate_generated(
        generated, manifest=manifest, real=real, inception_weights=inception_weights, metrics=metrics_spec,
        weightless=weightless, device=device, batch=batch, size=size, kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size, seed=seed, cache_dir=cache_dir, progress=progress)
    click.echo(format_table(results))
    if out is not None:
        write_json_atomic(out, record)
        click.echo(f"wrote {out}")
