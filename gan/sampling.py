"""Images from a generator: the seeded noise stream, forward passes with batch statistics, uint8.
Shared by `gan generate`, training's sample grids and `--fid-every`."""
from __future__ import annotations

import contextlib
import hashlib
import math

import numpy as np
import torch
from torch import nn

CHUNK = 64                  # images per generator forward pass (BatchNorm batch statistics)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8 on the CPU."""
    x = ((x.detach().float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


@contextlib.contextmanager
def frozen_buffers(model: nn.Module):
    """Run the model in train mode (BatchNorm batch statistics) and restore its buffers afterwards."""
    saved = [b.detach().clone() for b in model.buffers()]
    was_training = model.training
    model.train()
    try:
        yield model
    finally:
        with torch.no_grad():
            for b, s in zip(model.buffers(), saved):
                b.copy_(s)
        model.train(was_training)


@torch.no_grad()
def sample(G: nn.Module, z: torch.Tensor, batch: int = CHUNK) -> np.ndarray:
    """Generate from noise `z` (N, nz) in forward passes of `batch`; returns (N, H, W, 3) uint8."""
    device = next(G.parameters()).device
    out = []
    with frozen_buffers(G):
        for i in range(0, len(z), batch):
            out.append(to_uint8(G(z[i:i + batch].to(device))))
    return np.concatenate(out) if out else np.zeros((0, 0, 0, 3), np.uint8)


def noise_chunks(nz: int, seed: int):
    """The seeded noise stream, CHUNK vectors at a time: (CHUNK, nz) tensors, forever."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        yield torch.randn(CHUNK, nz, generator=gen)


def sample_n(G: nn.Module, n: int, seed: int) -> np.ndarray:
    """The first `n` images of the stream seeded by `seed`, exactly as `gan generate --seed` writes them."""
    chunks = noise_chunks(G.nz, seed)
    return np.concatenate([sample(G, next(chunks)) for _ in range(math.ceil(n / CHUNK))])[:n]


def weights_sha256(model: nn.Module) -> str:
    """sha256 over the names and bytes of a module's parameters and buffers."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
