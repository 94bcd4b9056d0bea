"""Scoring generated images against the real ones, as a library function (`gan fid` calls it).

`evaluate_generated` reads the generated PNGs (a folder, .zip files or one .zip), the real images (a
manifest's pack, built when missing or stale, with reference features cached under `<manifest
folder>/cache/fid/`; or a folder / .zip / uint8 (N, H, W, 3) .npy) and returns the metrics.
"""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path

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


def evaluate_generated(generated, *, manifest=None, real=None, inception_weights=None, metrics: str | None = None,
                       weightless: bool = False, device: str = "auto", batch: int = DEFAULT_BATCH,
                       size: int | None = None, kid_subsets: int = _D.kid_subsets,
                       kid_subset_size: int = _D.kid_subset_size, seed: int = _D.seed, cache_dir=None,
                       progress: bool = True) -> tuple[dict[str, float], dict]:
    """The metrics of `generated` against `manifest`'s kept samples or `real`, and a JSON-able record
    of what was compared with which weights (what `gan fid -o` writes).

    `metrics` is a comma-separated list (default FID, KID, MiFID); `weightless` adds the metrics
    that need no pretrained weights (alone: only those). The Inception weights are loaded before
    any image is read, so a missing file fails in seconds.
    """
    generated = Path(generated)
    manifest = None if manifest is None else Path(manifest)
    real = None if real is None else Path(real)
    cache_dir = None if cache_dir is None else Path(cache_dir)
    from common.outpaths import check_out_dir

    from . import metrics as M
    from .metrics.inception import resolve_device

    if (manifest is None) == (real is None):
        raise UserError("give exactly one of --manifest MANIFEST.parquet or --real DIR|PACK.npy")
    if real is not None and real.is_file() and real.suffix.lower() not in (".zip", ".npy"):
        raise UserError(f"--real {real}: must be a folder of images, a .zip or a uint8 (N, H, W, 3) .npy")
    if cache_dir is not None:
        check_out_dir(cache_dir, "--cache-dir")
    inception_names, weightless_names = parse_metrics(metrics, weightless)
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
        opts = M.EvalOptions(kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seed)
        results.update(M.evaluate(fake, real_arr, metrics=inception_names,
                                  inception_weights=str(weights.path) if weights.path else M.RANDOM,
                                  device=device, batch_size=batch, cache_dir=cache_dir, cache_key=key,
                                  progress=progress, opts=opts))
    if weightless_names:
        results.update(M.weightless_metrics(fake, real_arr, device=device, seed=seed, which=weightless_names))
    results.setdefault("n_fake", float(len(fake)))
    results.setdefault("n_real", float(len(real_arr)))
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
    return results, record
