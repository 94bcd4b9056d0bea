"""Nearest-neighbour memorisation check in pixel space: does the generator hand back training images?

Both sets are area-downsampled to `size` x `size` greyscale in [0, 1] and compared by Euclidean distance
(with `mirror`, each training image also counts in its horizontally flipped form, since the trainer
augments with flips). For each generated image g, d(g) = distance to its nearest training image. The
reference scale is the train-train nearest-neighbour distance t(x) of a training image x to its nearest
*other* training image (median over up to `max_train_queries` training images).

- raw: `memo_copy_frac` = fraction of generated images with d(g) < `copy_ratio` * median(t), i.e. closer to
  a training image than half the typical distance between two distinct training neighbours: near-copies.
- baseline: `memo_copy_frac_train` = the same fraction among training images themselves (what fresh samples
  of the data distribution would score; high values mean near-duplicates remain in the training set).
- `memo_nn_ratio` = median(d) / median(t): about 1 for fresh samples of the data distribution, well
  below 1 for copying, above 1 for images far from the data (e.g. an untrained generator).
- flag: `memo_flag` is 1.0 when memo_copy_frac exceeds the training baseline by more than `flag_frac`
  (default 0.05), i.e. memo_copy_frac > memo_copy_frac_train + flag_frac, else 0.0. (Held-out Caltech-101
  motorbikes against the other half score about 0.045 with a 0.035 baseline; copies score 1.0.)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoOptions:
    size: int = 32
    mirror: bool = True
    copy_ratio: float = 0.5
    flag_frac: float = 0.05
    max_fake: int = 2000
    max_train_queries: int = 2000
    chunk: int = 512


def _vectors(images: np.ndarray, size: int, device: str):
    import torch
    import torch.nn.functional as F

    out = []
    for i in range(0, len(images), 1024):
        x = torch.from_numpy(np.array(images[i:i + 1024])).to(device).permute(0, 3, 1, 2).float() / 255
        x = x.mean(dim=1, keepdim=True)
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="area")
        out.append(x)
    return torch.cat(out)


def _nn_dist(q, ref, chunk: int, exclude=None):
    """Nearest distance from each row of q to the rows of ref, skipping ref columns `exclude[i]` for row i."""
    import torch

    res = []
    for i in range(0, len(q), chunk):
        d = torch.cdist(q[i:i + chunk], ref)
        if exclude is not None:
            rows = torch.arange(len(d), device=d.device)
            for cols in exclude:
                d[rows, cols[i:i + chunk]] = float("inf")
        res.append(d.min(dim=1).values)
    return torch.cat(res)


def memorisation(fake: np.ndarray, train: np.ndarray, *, device: str = "cpu", seed: int = 0,
                 opts: MemoOptions = MemoOptions()) -> dict[str, float]:
    """Nearest-neighbour memorisation figures (see the module docstring); uint8 NHWC inputs."""
    import torch

    if len(train) < 2 or len(fake) < 1:
        raise ValueError(f"memorisation check needs >= 2 training and >= 1 generated images, got {len(train)}, {len(fake)}")
    rng = np.random.default_rng(seed)
    fi = np.sort(rng.choice(len(fake), min(len(fake), opts.max_fake), replace=False))
    g = _vectors(fake[fi], opts.size, device).flatten(1)
    t_img = _vectors(train, opts.size, device)
    t = t_img.flatten(1)
    ref = torch.cat([t, t_img.flip(-1).flatten(1)]) if opts.mirror else t
    d_fake = _nn_dist(g, ref, opts.chunk)

    qi = np.sort(rng.choice(len(train), min(len(train), opts.max_train_queries), replace=False))
    # a training image must not match itself or its own mirror: compare against the others only
    own = torch.from_numpy(qi).to(device)
    exclude = [own, own + len(t)] if opts.mirror else [own]
    d_train = _nn_dist(t[own], ref, opts.chunk, exclude=exclude)

    scale = float(d_train.median())
    thr = opts.copy_ratio * scale
    copy_frac = float((d_fake < thr).float().mean())
    baseline = float((d_train < thr).float().mean())
    out = {
        "memo_copy_frac": copy_frac,
        "memo_copy_frac_train": baseline,
        "memo_nn_ratio": float(d_fake.median()) / scale if scale > 0 else float("inf"),
        "memo_flag": float(copy_frac > baseline + opts.flag_frac),
    }
    log.info("memorisation: %s (threshold %.4f = %.2f x median train-train NN distance)", out, thr, opts.copy_ratio)
    return out
