"""The seed RaLSGAN generator and discriminator (the blog's DCGAN-style pair), sized by the config.

At the `seed` preset (size 128, nz 128, g_channels 1024, d_channels 32) the generator has
13,275,939 parameters and the discriminator 2,796,800, exactly as the blog's notebook:

    G: ConvT nz->1024 (k4 s1 p0) then 1024->512->256->128->64->32 (k4 s2 p1), each + BatchNorm + ReLU,
       then ConvT 32->3 (k3 s1 p1, with bias) and tanh. Only the last layer has a bias.
    D: Conv 3->32->64 (k4 s2 p1, LeakyReLU 0.2), 64->128->256->512 (k4 s2 p1, BatchNorm, LeakyReLU 0.2),
       Conv 512->1 (k4 s1 p0). No sigmoid, no biases.

Smaller sizes drop up/down blocks (size must be a power of two >= 16). With `spectral_norm=True` every
discriminator convolution is spectrally normalised and its BatchNorms are dropped (as in SNGAN).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def _n_blocks(size: int) -> int:
    n = int(round(math.log2(size))) - 2
    if size < 16 or 2 ** (n + 2) != size:
        raise ValueError(f"image size must be a power of two >= 16, got {size}")
    return n


class Generator(nn.Module):
    def __init__(self, nz: int = 128, size: int = 128, channels: int = 1024):
        super().__init__()
        n = _n_blocks(size)
        if channels >> n < 1:
            raise ValueError(f"g_channels={channels} is too small for {n} up-sampling blocks")
        self.nz = nz
        chs = [channels >> i for i in range(n + 1)]          # 1024, 512, ..., 32 at the seed preset
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, chs[0], 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(chs[0]), nn.ReLU(inplace=True)]
        for c_in, c_out in zip(chs[:-1], chs[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(chs[-1], 3, 3, 1, 1), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, nz) or (B, nz, 1, 1) noise -> (B, 3, size, size) images in [-1, 1]."""
        if z.dim() == 2:
            z = z[:, :, None, None]
        return self.main(z)


class Discriminator(nn.Module):
    def __init__(self, size: int = 128, channels: int = 32, spectral_norm: bool = False):
        super().__init__()
        n = _n_blocks(size)
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        chs = [3] + [channels << i for i in range(n)]        # 3, 32, 64, 128, 256, 512 at the seed preset
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(chs[:-1], chs[1:])):
            layers.append(sn(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)))
            if i >= 2 and not spectral_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers.append(sn(nn.Conv2d(chs[-1], 1, 4, 1, 0, bias=False)))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, size, size) -> (B,) raw logits (no sigmoid)."""
        return self.main(x).flatten()


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), BatchNorm weight N(1, 0.02) and bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        w = module.parametrizations.weight.original if hasattr(module, "parametrizations") else module.weight
        nn.init.normal_(w, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build_models(cfg, device: torch.device | str = "cpu", seed: int | None = None) -> tuple[Generator, Discriminator]:
    """G and D for a TrainConfig, initialised from an explicit seed (cfg.seed by default)."""
    gen = torch.Generator().manual_seed(cfg.seed if seed is None else seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
        G = Generator(cfg.nz, cfg.size, cfg.g_channels)
        D = Discriminator(cfg.size, cfg.d_channels, cfg.spectral_norm)
        G.apply(init_weights)
        D.apply(init_weights)
    return G.to(device), D.to(device)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
