"""`gan fid`: FID/KID/MiFID (and the weightless metrics) of generated PNGs against the real images.

Real images come from a manifest's pack (`preprocess.pack.ensure_pack`, built when missing or stale;
reference features cached under `<manifest folder>/cache/fid/`, keyed by the pack's content fingerprint
and the Inception weights' sha256) or from `--real` (a folder of images or a uint8 (N, H, W, 3) `.npy`).
Heavy libraries (torch, PIL, the manifest readers) load only when the command runs.
"""
from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import click

from manifests.atomic import write_text_atomic

from .metrics import DEFAULT_METRICS, METRICS, WEIGHTLESS, EvalOptions, UserError

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
DEFAULT_BATCH = 50
_D = EvalOptions()


def parse_metrics(spec: str | None, weightless: bool) -> tuple[list[str], list[str]]:
    """`--metrics a,b` (+ `--weightless`) -> (Inception metric names, weightless names), validated."""
    names = [s.strip() for s in (spec or "").split(",") if s.strip()]
    if not names:
        names = list(WEIGHTLESS) if weightless else list(DEFAULT_METRICS)
    elif weightless:
        names += [w for w in WEIGHTLESS if w not in names]
    valid = [*METRICS, *WEIGHTLESS]
    bad = [n for n in names if n not in valid]
    if bad:
        raise UserError(f"--metrics {spec}: unknown {','.join(bad)}; choose from {','.join(valid)}")
    return [n for n in names if n in METRICS], [n for n in names if n in WEIGHTLESS]


def _decode(data: bytes | Path, name: str):
    import io

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"{name}: not a readable image ({exc})") from exc


def _stack(items, what: str, progress: bool):
    """Decode (name, loader) pairs into one uint8 (N, H, W, 3) array; all images must share a size."""
    import numpy as np
    from tqdm import tqdm

    out, shape0, name0 = None, None, None
    for i, (name, load) in enumerate(tqdm(items, desc=f"reading {what}", unit="img", disable=not progress)):
        a = _decode(load(), name)
        if out is None:
            shape0, name0 = a.shape, name
            out = np.empty((len(items), *a.shape), np.uint8)
        elif a.shape != shape0:
            raise UserError(f"{name}: image is {a.shape[1]}x{a.shape[0]} but {name0} is {shape0[1]}x{shape0[0]}; "
                            f"all {what} images must have one size (preprocess them first)")
        out[i] = a
    return out


def read_images(path: Path, what: str, *, progress: bool = True):
    """Images from a folder (PNG/JPEG/..., or the .zip files in it when it holds no images) or a .zip."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".zip":
        zips = [path]
    elif path.is_file():
        raise UserError(f"--{what} {path}: must be a folder of images or a .zip")
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
        if files:
            return _stack([(str(p), (lambda p=p: p)) for p in files], what, progress)
        zips = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".zip")
    else:
        raise UserError(f"{path}: no such folder or .zip file ({what} images)")
    items = []
    for z in zips:
        try:
            zf = zipfile.ZipFile(z)
        except (zipfile.BadZipFile, OSError) as exc:
            raise UserError(f"{z}: not a readable zip ({exc})") from exc
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            if not info.is_dir() and Path(info.filename).suffix.lower() in IMAGE_EXTS:
                items.append((f"{z}:{info.filename}", (lambda zf=zf, n=info.filename: zf.read(n))))
    if not items:
        raise UserError(f"{path}: no images (.png/.jpg) found ({what})")
    return _stack(items, what, progress)


def _read_npy(path: Path):
    import numpy as np

    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"--real {path}: not a readable .npy ({exc})") from exc
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise UserError(f"--real {path}: expected uint8 (N, H, W, 3), got {arr.dtype} {tuple(arr.shape)}")
    return arr


def real_from_manifest(manifest: Path, size: int, *, progress: bool = True):
    """(images, cache_dir, cache_key) for the manifest's packed (kept) samples at `size` x `size`."""
    import hashlib

    from manifests.ids import file_sha256
    from manifests.paths import cache_dir
    from preprocess.pack import PrepOptions, ensure_pack, load_pack

    from .metrics.stats import content_key

    info = ensure_pack(manifest, PrepOptions(size=size), progress=progress)
    arr, ids = load_pack(info.npy_path)
    content = info.fingerprint or file_sha256(manifest)  # the pack's inputs + parameters, else the file
    key = content_key("manifest-pack", content, hashlib.sha256("\n".join(ids).encode()).hexdigest(), str(arr.shape))
    return arr, cache_dir(manifest, "fid"), key


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
    from . import metrics as M
    from .metrics.inception import resolve_device
    from manifests.outpaths import check_out_dir, check_out_file

    if (manifest is None) == (real is None):
        raise UserError("give exactly one of --manifest MANIFEST.parquet or --real DIR|PACK.npy")
    if real is not None and real.is_file() and real.suffix.lower() not in (".zip", ".npy"):
        raise UserError(f"--real {real}: must be a folder of images, a .zip or a uint8 (N, H, W, 3) .npy")
    if out is not None:
        check_out_file(out, "-o")
    if cache_dir is not None:
        check_out_dir(cache_dir, "--cache-dir")
    inception_names, weightless_names = parse_metrics(metrics_spec, weightless)
    names = [*inception_names, *weightless_names]
    device = resolve_device(device)
    weights = None
    if inception_names:  # fail fast (seconds), before reading thousands of images: load the network now
        weights = M.load_inception(inception_weights, device=device)

    fake = read_images(generated, "generated", progress=progress)
    M.check_counts(len(fake), None, names, fake=f"--generated {generated}")
    key = None
    if manifest is not None:
        real_arr, default_cache, key = real_from_manifest(manifest, size or fake.shape[1], progress=progress)
        cache_dir = cache_dir or default_cache
        real_what = f"--manifest {manifest} (its packed samples)"
    elif real.is_file() and real.suffix.lower() == ".npy":
        real_arr, real_what = _read_npy(real), f"--real {real}"
    else:
        real_arr, real_what = read_images(real, "real", progress=progress), f"--real {real}"
    M.check_counts(len(fake), len(real_arr), names, fake=f"--generated {generated}", real=real_what)

    results: dict[str, float] = {}
    if inception_names:
        opts = EvalOptions(kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seed)
        results.update(M.evaluate(fake, real_arr, metrics=inception_names,
                                  inception_weights=str(weights.path) if weights.path else M.RANDOM,
                                  device=device, batch_size=batch, cache_dir=cache_dir, cache_key=key,
                                  progress=progress, opts=opts))
    if weightless_names:
        results.update(M.weightless_metrics(fake, real_arr, device=device, seed=seed, which=weightless_names))
    results.setdefault("n_fake", float(len(fake)))
    results.setdefault("n_real", float(len(real_arr)))

    click.echo(format_table(results))
    if out is not None:
        record = {
            "metrics": results,
            "generated": str(generated),
            "real": str(manifest or real),
            "inception_weights": None if weights is None else (str(weights.path) if weights.path else M.RANDOM),
            "inception_weights_id": None if weights is None else weights.identity,
            "device": device,
            "seed": seed,
        }
        if weights is not None and weights.is_random:
            record["warning"] = "random-init Inception: for testing only, not comparable with any published FID"
        write_json_atomic(out, record)
        click.echo(f"wrote {out}")
