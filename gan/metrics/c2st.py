"""Classifier two-sample test (Lopez-Paz & Oquab 2017): a metric that needs no pretrained weights.

A small CNN, freshly initialised from `seed`, learns to tell real from generated images on one half of
each set (both downsampled to `size` x `size`); its accuracy on the other, held-out half is the figure.
0.5 means the classifier cannot tell them apart; 1.0 means it always can. Both classes are balanced to
the same count (at most `max_per_class`). `score` maps the accuracy to [0, 1] (0 = indistinguishable,
1 = trivially separable) as 2 * |acc - 0.5|.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger(__name__)

MIN_IMAGES = 4  # per class, with the default train_frac: two to train on and two held out


@dataclass(frozen=True)
class C2STOptions:
    size: int = 32  # images are area-downsampled to size x size
    max_per_class: int = 1000
    train_frac: float = 0.5
    steps: int = 300  # optimiser steps (epochs over the training half repeat as needed)
    batch: int = 64
    lr: float = 2e-3
    width: int = 16


def _downsample(images: np.ndarray, size: int, device: str):
    """uint8 NHWC -> float NCHW in [-1, 1] at size x size (area averaging), converted in chunks."""
    import torch
    import torch.nn.functional as F

    out = []
    for i in range(0, len(images), 256):
        x = torch.from_numpy(np.array(images[i:i + 256])).to(device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1)
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="area")
        out.append(x)
    return torch.cat(out)


def _net(width: int):
    """Three stride-2 convolutions and a linear read-out: ~2.4 MFLOP per 32x32 image, quick on a CPU."""
    from torch import nn

    w = width
    return nn.Sequential(
        nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),
        nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, 1),
    )


def c2st(fake: np.ndarray, real: np.ndarray, *, device: str = "cpu", seed: int = 0,
         opts: C2STOptions = C2STOptions()) -> dict[str, float]:
    """Held-out accuracy of a fresh CNN telling `real` (label 1) from `fake` (label 0); uint8 NHWC inputs."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    n = min(len(fake), len(real), opts.max_per_class)
    n_train = int(round(n * opts.train_frac))
    if n_train < 2 or n - n_train < 2:
        raise ValueError(f"C2ST needs at least 4 images per class, got {len(fake)} generated and {len(real)} real")
    fi = np.sort(rng.choice(len(fake), n, replace=False))
    ri = np.sort(rng.choice(len(real), n, replace=False))
    xf, xr = _downsample(fake[fi], opts.size, device), _downsample(real[ri], opts.size, device)
    pf, pr = rng.permutation(n), rng.permutation(n)
    x_train = torch.cat([xf[pf[:n_train]], xr[pr[:n_train]]])
    x_test = torch.cat([xf[pf[n_train:]], xr[pr[n_train:]]])
    y_train = torch.cat([torch.zeros(n_train), torch.ones(n_train)]).to(device)
    y_test = torch.cat([torch.zeros(n - n_train), torch.ones(n - n_train)]).to(device)

    g = torch.Generator(device="cpu").manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _net(opts.width).to(device)
    optim = torch.optim.Adam(net.parameters(), lr=opts.lr, betas=(0.5, 0.999))
    net.train()
    batch = min(opts.batch, len(x_train))
    order, pos = None, len(x_train)
    for _ in range(opts.steps):
        if pos + batch > len(x_train):  # a new epoch: reshuffle
            order, pos = torch.randperm(len(x_train), generator=g).to(device), 0
        idx = order[pos:pos + batch]
        pos += batch
        loss = F.binary_cross_entropy_with_logits(net(x_train[idx]).squeeze(1), y_train[idx])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
    net.eval()
    with torch.no_grad():
        logits = torch.cat([net(x_test[i:i + 256]).squeeze(1) for i in range(0, len(x_test), 256)])
    acc = float(((logits > 0).float() == y_test).float().mean())
    log.info("C2ST: held-out accuracy %.3f on %d images (%s)", acc, len(y_test), asdict(opts))
    return {"c2st_acc": acc, "c2st_score": min(1.0, 2 * abs(acc - 0.5)), "c2st_n_test": float(len(y_test))}
