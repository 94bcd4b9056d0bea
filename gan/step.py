"""The training state (networks, optimisers, EMA, the draws) and the step: eager, or captured in
one CUDA graph (`GraphedStep`)."""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from . import augment
from .checkpoint import set_rng_states
from .config import TrainConfig
from .data import StepRandom, TrainData
from .ema import EMA
from .losses import get_loss
from .models import build_models

log = logging.getLogger(__name__)


@dataclass
class State:
    """Everything a checkpoint holds besides the config."""
    G: torch.nn.Module
    D: torch.nn.Module
    ema: EMA | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    rand: StepRandom
    step: int = 0
    images: int = 0         # real images seen so far (steps x batch, summed over resumes with other batches)

    def payload(self, cfg: TrainConfig, data: TrainData, world: int) -> dict:
        return {
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "G_ema": self.ema.state_dict() if self.ema else None,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "step": self.step, "images": self.images, "config": cfg.to_dict(), "random": self.rand.state_dict(),
            "data": {"source": data.source, "key": data.key, "n": int(len(data.images))},
            "world_size": world,
        }

    def load(self, ck: dict, cfg: TrainConfig) -> None:
        """The checkpoint's state; the optimisers' hyper-parameters are `cfg`'s (a resume may change
        them: load_state_dict alone would bring back the checkpoint's learning rate)."""
        self.G.load_state_dict(ck["G"])
        self.D.load_state_dict(ck["D"])
        if self.ema is not None:
            self.ema.load_state_dict(ck["G_ema"] if ck.get("G_ema") is not None else ck["G"])
        self.opt_g.load_state_dict(ck["opt_g"])
        self.opt_d.load_state_dict(ck["opt_d"])
        for opt, lr in ((self.opt_g, cfg.lr_g), (self.opt_d, cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"], group["betas"] = lr, (cfg.beta1, cfg.beta2)
        self.rand.load_state_dict(ck["random"])
        self.step = int(ck["step"])
        self.images = int(ck.get("images", self.step * ck["config"]["batch"]))  # older checkpoints: one batch size
        set_rng_states(ck["rng"])


def build_state(cfg: TrainConfig, n_images: int, device: torch.device) -> State:
    G, D = build_models(cfg, device)
    if cfg.channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    adam = {"betas": (cfg.beta1, cfg.beta2), "capturable": cfg.cuda_graph and device.type == "cuda"}
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, **adam)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, **adam)
    ema = EMA(G, cfg.ema_kimg, cfg.ema_rampup) if cfg.ema else None
    rand = StepRandom(n_images, cfg.batch, cfg.nz, augment.n_uniforms(cfg.diffaug), cfg.seed)
    return State(G, D, ema, opt_g, opt_d, rand)


def make_step(cfg: TrainConfig, G, D, opt_g, opt_d, images: torch.Tensor, *, graphed: bool = False):
    """The training step on one batch of draws (already on the device). Returns detached
    (loss_d, loss_g, mean D(real), mean D(fake)). G and D may be DDP/compiled wrappers."""
    loss = get_loss(cfg.loss)
    y, policy = cfg.real_label, cfg.diffaug
    D_params = [p for p in D.parameters()]
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    amp = dict(device_type=images.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16",
               cache_enabled=not graphed)
    D_inner = getattr(D, "_orig_mod", D)                    # under torch.compile
    no_sync = D_inner.no_sync if isinstance(D_inner, DDP) else contextlib.nullcontext

    def aug(x, u):
        return augment.diff_augment(x, policy, u) if policy else x

    def step(idx, z, u_real, u_diff):
        real = augment.real_batch(images[idx], u_real, flip_p=cfg.flip_p, rotate_p=cfg.rotate_p,
                                  rotate_deg=cfg.rotate_deg).contiguous(memory_format=fmt)
        # D: [mean((C(xr) - mean C(xf) - y)^2) + mean((C(xf) - mean C(xr) + y)^2)] / 2 for RaLSGAN
        opt_d.zero_grad(set_to_none=True)
        with torch.autocast(**amp):
            fake = G(z[:, :, None, None])
            d_real = D(aug(real, u_diff[0])).float()
            d_fake = D(aug(fake.detach(), u_diff[1])).float()
        loss_d = loss.d(d_real, d_fake, y)
        loss_d.backward()
        opt_d.step()
        # G: the same fake batch through the updated D, against this step's (detached) real logits
        opt_g.zero_grad(set_to_none=True)
        for p in D_params:
            p.requires_grad_(False)
        with no_sync(), torch.autocast(**amp):
            d_fake_g = D(aug(fake, u_diff[2])).float()
        loss_g = loss.g(d_real.detach(), d_fake_g, y)
        loss_g.backward()
        opt_g.step()
        for p in D_params:
            p.requires_grad_(True)
        return loss_d.detach(), loss_g.detach(), d_real.detach().mean(), d_fake.detach().mean()

    return step


class GraphedStep:
    """Runs `step` eagerly for a few warm-up steps on a side stream, then captures it in one CUDA
    graph and replays it; each call copies the step's draws into the graph's static inputs."""

    def __init__(self, step, warmup: int = 3):
        self.step, self.warmup, self.calls = step, warmup, 0
        self.static: dict[str, torch.Tensor] | None = None
        self.graph, self.out = None, None

    def __call__(self, device: torch.device, **draws):
        if self.static is None:
            self.static = {k: torch.empty_like(v, device=device) for k, v in draws.items()}
        for k, v in draws.items():
            self.static[k].copy_(v.pin_memory() if v.numel() else v, non_blocking=True)
        if self.calls < self.warmup:
            self.calls += 1
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                out = self.step(**self.static)
            torch.cuda.current_stream(device).wait_stream(side)
            return out
        if self.graph is None:
            torch.cuda.synchronize(device)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.out = self.step(**self.static)
            log.info("captured the training step in a CUDA graph")
        self.graph.replay()
        return self.out
