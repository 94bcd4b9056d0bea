"""An exponential moving average of the generator's weights (its buffers are copied as they are)."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """`update(G, n_images)` after each step; `module` is the averaged generator (kept in train mode
    so its BatchNorms use batch statistics when sampling, like the generator it follows).

    The half-life is `halflife_kimg` thousand images, ramped up as `rampup * images seen` early on
    (StyleGAN2-ADA's schedule), so the average does not drag in the random initialisation.
    """

    def __init__(self, model: nn.Module, halflife_kimg: float = 10.0, rampup: float = 0.05):
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.halflife_kimg, self.rampup = halflife_kimg, rampup

    def beta(self, batch: int, images_seen: int) -> float:
        halflife = self.halflife_kimg * 1000
        if self.rampup > 0:
            halflife = min(halflife, images_seen * self.rampup)
        return 0.5 ** (batch / max(halflife, 1e-8))

    @torch.no_grad()
    def update(self, model: nn.Module, batch: int, images_seen: int) -> None:
        beta = self.beta(batch, images_seen)
        src = [p.detach() for p in model.parameters()]
        dst = list(self.module.parameters())
        torch._foreach_lerp_(dst, src, 1.0 - beta)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
