"""GAN losses in a registry: each is a pair of functions of the discriminator's raw logits.

`d(real, fake, y)` is the discriminator's loss and `g(real, fake, y)` the generator's, with `real`
and `fake` the (B,) logits and `y` the real label (0.8 in the seed recipe; only RaLSGAN uses it).
In the generator step `real` is the detached logits of the same step's real batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# No torch import at module level: the CLI reads the registry's names for `--loss` without loading torch.
LossFn = Callable[..., "torch.Tensor"]  # noqa: F821  (real, fake, y) -> scalar


@dataclass(frozen=True)
class GanLoss:
    d: LossFn
    g: LossFn
    doc: str


def _ralsgan_d(real, fake, y):
    # [mean((C(xr) - mean C(xf) - y)^2) + mean((C(xf) - mean C(xr) + y)^2)] / 2
    return (((real - fake.mean() - y) ** 2).mean() + ((fake - real.mean() + y) ** 2).mean()) / 2


def _ralsgan_g(real, fake, y):
    # [mean((C(xr) - mean C(xf) + y)^2) + mean((C(xf) - mean C(xr) - y)^2)] / 2
    return (((real - fake.mean() + y) ** 2).mean() + ((fake - real.mean() - y) ** 2).mean()) / 2


def _hinge_d(real, fake, y):
    return (1 - real).clamp(min=0).mean() + (1 + fake).clamp(min=0).mean()


def _hinge_g(real, fake, y):
    return -fake.mean()


def _ns_d(real, fake, y):
    from torch.nn.functional import softplus

    return softplus(-real).mean() + softplus(fake).mean()


def _ns_g(real, fake, y):
    from torch.nn.functional import softplus

    return softplus(-fake).mean()


LOSSES: dict[str, GanLoss] = {
    "ralsgan": GanLoss(_ralsgan_d, _ralsgan_g, "relativistic average least squares (the seed recipe)"),
    "hinge": GanLoss(_hinge_d, _hinge_g, "hinge loss (SNGAN/BigGAN)"),
    "nonsaturating": GanLoss(_ns_d, _ns_g, "non-saturating logistic loss (StyleGAN)"),
}


def get_loss(name: str) -> GanLoss:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}") from None
