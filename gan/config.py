"""Training configuration: one frozen dataclass, and named presets (the CLI's `--preset` choices).

`seed` is the blog's recipe exactly; the others change one documented thing at a time. A run's
resolved config is written to `config.json` before training and stored in every checkpoint.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from common.errors import UserError  # light: no pandas/pyarrow


DIFFAUG_OPS = ("color", "translation", "cutout")   # gan.augment.DIFF_OPS (kept here so config needs no torch)
FID_N_MIN = 4   # images per --fid-every evaluation: gan.metrics.c2st.MIN_IMAGES, the weightless fallback's need


@dataclass(frozen=True)
class TrainConfig:
    name: str = "seed"
    # model
    size: int = 128                 # image side (power of two >= 16)
    nz: int = 128                   # noise dimension
    g_channels: int = 1024          # generator width at 4x4; halves at each up-sampling block
    d_channels: int = 32            # discriminator width after the first conv; doubles per block
    spectral_norm: bool = False     # SN on every D conv (and no BatchNorm in D)
    # objective and optimiser
    loss: str = "ralsgan"           # gan.losses.LOSSES
    real_label: float = 0.8         # y in the RaLSGAN losses
    lr_g: float = 8e-4
    lr_d: float = 8e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch: int = 64                 # global batch (split across DDP ranks)
    steps: int = 100_000            # ~640 epochs of 10k images at batch 64 (the blog ran 550-750)
    seed: int = 0
    # augmentation of the real images (the seed's torchvision transforms)
    flip_p: float = 0.5
    rotate_p: float = 0.3
    rotate_deg: float = 5.0
    diffaug: str = ""               # DiffAugment policy, e.g. "color,translation,cutout"
    # EMA generator
    ema: bool = False
    ema_kimg: float = 10.0          # half-life in thousands of images
    ema_rampup: float = 0.05        # half-life <= rampup * images seen so far (0 disables)
    # speed switches
    precision: str = "fp32"         # fp32 | bf16 (autocast)
    channels_last: bool = False
    cuda_graph: bool = False        # whole training step in one CUDA graph (CUDA only)
    compile: bool = False           # torch.compile G and D
    # bookkeeping
    log_every: int = 50
    sample_every: int = 1000
    ckpt_every: int = 2000
    fid_every: int = 0              # 0 = never
    fid_n: int = 5000               # generated images per FID evaluation
    n_grid: int = 64                # images in a sample grid (fixed noise)

    def __post_init__(self):
        finite = math.isfinite
        checks = {  # field -> (valid, what it must be)
            "size": (self.size >= 16 and self.size & (self.size - 1) == 0, "a power of two >= 16"),
            "batch": (self.batch >= 2, ">= 2"), "steps": (self.steps >= 0, ">= 0"), "nz": (self.nz >= 1, ">= 1"),
            "precision": (self.precision in ("fp32", "bf16"), "fp32 or bf16"),
            "lr_g": (finite(self.lr_g) and self.lr_g > 0, "a finite number > 0"),
            "lr_d": (finite(self.lr_d) and self.lr_d > 0, "a finite number > 0"),
            "beta1": (0 <= self.beta1 < 1, "in [0, 1)"), "beta2": (0 <= self.beta2 < 1, "in [0, 1)"),
            "real_label": (finite(self.real_label), "finite"),
            "flip_p": (0 <= self.flip_p <= 1, "in [0, 1]"), "rotate_p": (0 <= self.rotate_p <= 1, "in [0, 1]"),
            "rotate_deg": (finite(self.rotate_deg), "finite"),
            "ema_kimg": (finite(self.ema_kimg) and self.ema_kimg > 0, "a finite number > 0"),
            "ema_rampup": (finite(self.ema_rampup) and self.ema_rampup >= 0, "a finite number >= 0"),
            "log_every": (self.log_every >= 1, ">= 1"), "sample_every": (self.sample_every >= 0, ">= 0"),
            "ckpt_every": (self.ckpt_every >= 0, ">= 0"), "fid_every": (self.fid_every >= 0, ">= 0"),
            "fid_n": (self.fid_n >= FID_N_MIN, f">= {FID_N_MIN}, what the C2ST fallback needs"),
        }
        bad = [f"{k}={getattr(self, k)!r} (must be {why})" for k, (ok, why) in checks.items() if not ok]
        if bad:
            raise UserError("invalid training option(s): " + ", ".join(bad))
        from .losses import LOSSES

        if self.loss not in LOSSES:
            raise UserError(f"loss={self.loss!r}: choose from {', '.join(LOSSES)}")
        unknown = [p for p in self.diffaug.split(",") if p.strip() and p.strip() not in DIFFAUG_OPS]
        if unknown:
            raise UserError(f"diffaug={self.diffaug!r}: unknown op(s) {unknown}; choose from {', '.join(DIFFAUG_OPS)}")

    def replace(self, **changes) -> "TrainConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise UserError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


SEED = TrainConfig()

PRESETS: dict[str, TrainConfig] = {
    # The blog's recipe: architecture, Adam 8e-4 (0.5, 0.999), batch 64, y=0.8, flip + rotation, fp32.
    "seed": SEED,
    # Test-sized: 32x32, a few steps, runs in seconds on one CPU core.
    "tiny": SEED.replace(name="tiny", size=32, nz=16, g_channels=64, d_channels=8, batch=8, steps=20,
                         log_every=5, sample_every=10, ckpt_every=10, n_grid=16, fid_n=64),
    # A CPU demo: 64x64, narrower nets, a few minutes on 2 cores (~270 img/s there).
    "cpu": SEED.replace(name="cpu", size=64, nz=64, g_channels=256, d_channels=16, batch=32, steps=1200,
                        log_every=20, sample_every=100, ckpt_every=200, fid_n=500, ema=True),
    # The seed recipe, faster on a GPU: same models and losses, batch 256, bf16, channels_last.
    # (`--cuda-graph` captures the whole step; off by default until it has run on a GPU here.)
    "fast": SEED.replace(name="fast", batch=256, steps=25_000, precision="bf16", channels_last=True,
                         log_every=100, sample_every=1000, ckpt_every=2500),
    # What moves FID most on ~10k images: DiffAugment, an EMA generator, spectral norm in D.
    "improved": SEED.replace(name="improved", batch=256, steps=25_000, precision="bf16", channels_last=True,
                             ema=True, diffaug="color,translation,cutout",
                             spectral_norm=True, log_every=100, sample_every=1000, ckpt_every=2500),
}


@dataclass(frozen=True)
class GenerateOptions:
    """`gan generate`'s options and defaults (used by gan.generate.generate)."""
    n: int = 10_000
    seed: int = 0
    zip: bool = False
    device: str = "auto"
    ema: bool = True            # use the EMA generator when the checkpoint has one


def get_preset(name: str) -> TrainConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"--preset {name!r}: choose from {', '.join(PRESETS)}") from None
