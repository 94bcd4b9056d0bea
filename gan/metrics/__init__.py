"""Image-set metrics for the generator: FID, KID, MiFID (Inception features) and weightless checks.

- `evaluate(fake, real, ...)`: Inception-feature metrics from the `METRICS` registry. Needs the FID
  Inception weights (see `gan.metrics.inception` for where they are looked for and how to supply them
  offline); raises `InceptionUnavailable` (a `UserError`) within seconds when they cannot be had.
- `weightless_metrics(fake, real, ...)`: the `WEIGHTLESS` registry (same `Metric` signature, on the
  images instead of features): a classifier two-sample test
  (`gan.metrics.c2st`) and a nearest-neighbour memorisation check (`gan.metrics.memorisation`); no
  pretrained weights.

Inputs are uint8 NHWC arrays (N, H, W, 3). Importing this package loads neither torch nor pandas.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .inception import RANDOM, InceptionUnavailable, UserError, resolve_weights
from .stats import KID_SUBSET_SIZE, KID_SUBSETS, MIFID_EPS, Stats

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_METRICS", "METRICS", "RANDOM", "WEIGHTLESS", "Context", "EvalOptions", "FeatureSet",
    "InceptionUnavailable", "Metric", "UserError", "check_counts", "evaluate", "inception_available",
    "load_inception", "min_images", "weightless_metrics",
]


@dataclass(frozen=True)
class EvalOptions:
    """Knobs of the Inception metrics (defaults as torch-fidelity: KID 100 subsets of 1000)."""

    kid_subsets: int = KID_SUBSETS
    kid_subset_size: int = KID_SUBSET_SIZE
    mifid_eps: float = MIFID_EPS
    seed: int = 0


@dataclass
class FeatureSet:
    """Features of one image set, with statistics computed once on first use."""

    features: np.ndarray
    _stats: Stats | None = field(default=None, repr=False)

    @property
    def stats(self) -> Stats:
        if self._stats is None:
            from .stats import feature_stats

            self._stats = feature_stats(self.features)
        return self._stats


@dataclass
class Context:
    """What a metric step may use besides the two feature sets."""

    opts: EvalOptions
    device: str | None = None  # torch device for the heavy kernel sums (None: numpy on the CPU)
    results: dict = field(default_factory=dict)  # earlier metrics' values (MiFID reuses FID)


@dataclass(frozen=True)
class Metric:
    """A registered metric: fn(fake, real, ctx) -> named values. `fake` and `real` are `FeatureSet`s
    for the Inception metrics (`METRICS`) and the uint8 NHWC images for the weightless ones
    (`WEIGHTLESS`); a new metric goes in one of the two registries with this one signature."""

    name: str
    fn: Callable[..., dict[str, float]]
    doc: str


def _fid(fake: FeatureSet, real: FeatureSet, ctx: Context) -> dict[str, float]:
    from .stats import fid_from_stats, frechet_distance_features

    if min(len(fake.features), len(real.features)) < fake.features.shape[1]:
        return {"fid": frechet_distance_features(fake.features, real.features)}
    return {"fid": fid_from_stats(fake.stats, real.stats, device=ctx.device)}


def _kid(fake: FeatureSet, real: FeatureSet, ctx: Context) -> dict[str, float]:
    from .stats import kid

    m, s = kid(fake.features, real.features, subsets=ctx.opts.kid_subsets, subset_size=ctx.opts.kid_subset_size,
               seed=ctx.opts.seed, device=ctx.device)
    return {"kid": m, "kid_std": s}


def _mifid(fake: FeatureSet, real: FeatureSet, ctx: Context) -> dict[str, float]:
    from .stats import memorisation_distance, mifid

    fid_value = ctx.results["fid"] if "fid" in ctx.results else _fid(fake, real, ctx)["fid"]
    d = memorisation_distance(fake.features, real.features, device=ctx.device)
    return {"mifid": mifid(fid_value, d, eps=ctx.opts.mifid_eps), "mifid_distance": d}


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("fid", _fid, "Fréchet Inception distance (lower is better)"),
    Metric("kid", _kid, "kernel Inception distance, unbiased MMD^2, mean and std over subsets"),
    Metric("mifid", _mifid, "memorisation-informed FID (Kaggle): FID / min-cosine-distance when < 0.1"),
)}
DEFAULT_METRICS = ("fid", "kid", "mifid")

_MEMO: OrderedDict[str, FeatureSet] = OrderedDict()  # reference features for repeated calls (training)
_MEMO_SIZE = 2


def inception_available(inception_weights=None) -> bool:
    """True when `evaluate` would find weights (no download is attempted)."""
    try:
        resolve_weights(inception_weights, download=False)
    except InceptionUnavailable:
        return False
    return True


def load_inception(inception_weights=None, *, device: str = "cpu"):
    """Resolve the weights and build the network now (cached for `evaluate` on the same device), so
    that a bad weights file stops a command before any work; returns the resolved weights."""
    from .inception import _cached_extractor, resolve_device

    weights = resolve_weights(inception_weights)
    _cached_extractor(weights, resolve_device(device))
    return weights


def min_images(names) -> tuple[int, str]:
    """The fewest images per set that every metric in `names` can work with, and the metric that sets it."""
    from .c2st import MIN_IMAGES as C2ST_MIN

    need = {"c2st": C2ST_MIN}
    return max(((need.get(n, 2), n) for n in names), default=(2, ""))


def check_counts(n_fake: int | None, n_real: int | None, names, *, fake: str = "generated images",
                 real: str = "real images") -> None:
    """Raise a one-line UserError, before any work, when a set is too small for a metric in `names`
    (a count of None is not checked)."""
    need, by = min_images(names)
    for n, what in ((n_fake, fake), (n_real, real)):
        if n is not None and n < need:
            raise UserError(f"{what}: {n} image(s), but {by} needs at least {need}")


def _check_images(name: str, arr) -> np.ndarray:
    if hasattr(arr, "detach"):  # a torch tensor
        arr = arr.detach().cpu().numpy()
    if not hasattr(arr, "shape"):
        arr = np.asarray(arr)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise UserError(f"{name} images: expected uint8 (N, H, W, 3), got {arr.dtype} {tuple(arr.shape)}")
    if len(arr) < 2:
        raise UserError(f"{name} images: need at least 2, got {len(arr)}")
    return arr


def _real_features(real, weights, *, device, batch_size, cache_dir, cache_key, progress) -> FeatureSet:
    from .inception import extract_features
    from .stats import FeatureCache, array_key, content_key

    key = None
    if cache_key is not None or cache_dir is not None:
        key = content_key(cache_key if cache_key is not None else array_key(real), weights.identity, "pool2048")
        if key in _MEMO:
            _MEMO.move_to_end(key)
            return _MEMO[key]
    disk = FeatureCache(cache_dir) if cache_dir is not None and key is not None else None
    hit = disk.load(key) if disk is not None else None
    if hit is not None:
        fs = FeatureSet(hit[0], hit[1])
    else:
        fs = FeatureSet(extract_features(real, weights, device=device, batch_size=batch_size,
                                         progress=progress, desc="inception (real)"))
        if disk is not None:
            log.info("cached reference statistics at %s", disk.save(key, fs.features, fs.stats))
    if key is not None:
        _MEMO[key] = fs
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    return fs


def evaluate(fake: np.ndarray, real: np.ndarray, *, metrics=DEFAULT_METRICS, inception_weights=None,
             device: str = "cpu", batch_size: int = 50, cache_dir=None, cache_key: str | None = None,
             progress: bool = False, opts: EvalOptions = EvalOptions()) -> dict[str, float]:
    """Inception-feature metrics of generated vs real images (uint8 NHWC arrays).

    Returns e.g. {"fid", "kid", "kid_std", "mifid", "mifid_distance", "n_fake", "n_real"}.
    `inception_weights`: a file path, None (torch hub cache, else download when online) or "random"
    (seeded random-init network, for tests only). Real-image features and statistics are cached in
    `cache_dir` (and in memory for repeated calls) under `cache_key` (e.g. the manifest's content hash)
    combined with the weights' sha256; with `cache_dir` but no `cache_key` the key is the pixels' sha256.
    """
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise UserError(f"--metrics {','.join(names)}: unknown {unknown}; choose from {','.join(METRICS)}")
    fake, real = _check_images("generated", fake), _check_images("real", real)
    weights = resolve_weights(inception_weights)  # fails fast, before any work
    if weights.is_random:
        log.warning("random-init Inception: numbers are for testing only and not comparable with anything")

    from .inception import extract_features, resolve_device

    real_fs = _real_features(real, weights, device=device, batch_size=batch_size, cache_dir=cache_dir,
                             cache_key=cache_key, progress=progress)
    fake_fs = FeatureSet(extract_features(fake, weights, device=device, batch_size=batch_size,
                                          progress=progress, desc="inception (generated)"))
    dev = resolve_device(device)
    ctx = Context(opts, device=None if dev == "cpu" else dev)
    for name in names:
        ctx.results.update(METRICS[name].fn(fake_fs, real_fs, ctx))
    out = dict(ctx.results)
    out["n_fake"], out["n_real"] = float(len(fake)), float(len(real))
    return out


def _c2st(fake: np.ndarray, real: np.ndarray, ctx: Context) -> dict[str, float]:
    from .c2st import c2st

    return c2st(fake, real, device=ctx.device, seed=ctx.opts.seed)


def _memorisation(fake: np.ndarray, real: np.ndarray, ctx: Context) -> dict[str, float]:
    from .memorisation import memorisation

    return memorisation(fake, real, device=ctx.device, seed=ctx.opts.seed)


WEIGHTLESS: dict[str, Metric] = {m.name: m for m in (
    Metric("c2st", _c2st, "classifier two-sample test accuracy on small copies (0.5: indistinguishable)"),
    Metric("memorisation", _memorisation, "share of generated images that are near copies of training images"),
)}


def weightless_metrics(fake: np.ndarray, real: np.ndarray, *, device: str = "cpu", seed: int = 0,
                       which=tuple(WEIGHTLESS)) -> dict[str, float]:
    """Metrics that need no pretrained weights: C2ST accuracy (`c2st_acc`, 0.5 = indistinguishable) and
    nearest-neighbour memorisation figures (`memo_copy_frac`, `memo_copy_frac_train`, `memo_nn_ratio`,
    `memo_flag`). `real` should be the training images (memorisation is measured against them)."""
    from .inception import resolve_device

    fake, real = _check_images("generated", fake), _check_images("real", real)
    unknown = [n for n in which if n not in WEIGHTLESS]
    if unknown:
        raise UserError(f"weightless metric {unknown[0]!r}: choose from {','.join(WEIGHTLESS)}")
    check_counts(len(fake), len(real), which)
    ctx = Context(EvalOptions(seed=seed), device=resolve_device(device))
    for name in which:
        ctx.results.update(WEIGHTLESS[name].fn(fake, real, ctx))
    return dict(ctx.results)
