"""`gan train --fid-every`: FID/KID/MiFID of samples during training (weightless metrics when the
Inception weights are missing)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from .config import TrainConfig
from .data import TrainData
from .sampling import sample_n

log = logging.getLogger(__name__)


def make_metrics(cfg: TrainConfig, data: TrainData, cache_dir: Path, weights, device: torch.device):
    """The `--fid-every` evaluator (None without --fid-every), checked before training starts."""
    if not cfg.fid_every:
        return None
    try:
        from . import metrics
    except ImportError as exc:
        log.warning("gan.metrics is unavailable (%s): --fid-every is skipped", exc)
        return None
    return PeriodicMetrics(metrics, cfg, data, cache_dir, weights, device)


class PeriodicMetrics:
    """`--fid-every`: FID/KID/MiFID via gan.metrics; the weightless metrics when Inception is missing.

    Made before training: an `--inception-weights` file that is not the FID Inception (or not a
    weights file at all) stops the run there, as does training data too small for the metrics."""

    def __init__(self, metrics, cfg: TrainConfig, data: TrainData, cache_dir: Path, weights, device: torch.device):
        self.M, self.cfg, self.data, self.cache_dir, self.weights, self.device = (
            metrics, cfg, data, Path(cache_dir), weights, device)
        self.inception_ok = True
        try:
            metrics.load_inception(weights, device=str(device))  # loads the network once, cached for later
        except metrics.InceptionUnavailable as exc:
            if weights is not None:                              # the file the user named is unusable
                raise
            self.inception_ok = False
            log.warning("FID is unavailable (%s): --fid-every reports the weightless metrics instead",
                        str(exc).replace(", or use --weightless for metrics that need no weights", ""))
        names = metrics.DEFAULT_METRICS if self.inception_ok else tuple(metrics.WEIGHTLESS)
        metrics.check_counts(cfg.fid_n, len(data.images), names, fake="--fid-n",
                             real="--fid-every: the training data")

    def __call__(self, G, step: int) -> dict | None:
        M = self.M
        fake = sample_n(G, self.cfg.fid_n, self.cfg.seed + 2)
        real = self.data.images
        if self.inception_ok:
            try:
                vals = M.evaluate(fake, real, inception_weights=self.weights, device=str(self.device),
                                  cache_dir=self.cache_dir, cache_key=self.data.key)
                log.info("step %d: %s", step, vals)
                return {"step": step, "metrics": vals}
            except M.InceptionUnavailable as exc:
                self.inception_ok = False
                log.warning("FID is unavailable (%s): reporting the weightless metrics instead",
                            str(exc).replace(", or use --weightless for metrics that need no weights", ""))
        vals = M.weightless_metrics(fake, real, device=str(self.device), seed=self.cfg.seed)
        log.info("step %d: %s", step, vals)
        return {"step": step, "metrics": vals, "fid_unavailable": True}
