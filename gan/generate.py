"""Images from a generator: N RGB PNGs from a checkpoint (the EMA generator when it has one).

The generators use BatchNorm; like the blog's notebook we sample with batch statistics (train-mode
BatchNorm) and leave the module's running statistics untouched.
"""
from __future__ import annotations

import contextlib
import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from manifests.atomic import atomic_path, write_bytes_atomic

from .checkpoint import load_checkpoint
from .config import GenerateOptions, TrainConfig, UserError
from .models import Generator

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"--device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available here (use --device cpu or auto)")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device {device}: use auto, cpu, cuda or cuda:N")
    return dev


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
def sample(G: nn.Module, z: torch.Tensor, batch: int = 250) -> np.ndarray:
    """Generate from noise `z` (N, nz) in batches; returns (N, H, W, 3) uint8."""
    device = next(G.parameters()).device
    out = []
    with frozen_buffers(G):
        for i in range(0, len(z), batch):
            out.append(to_uint8(G(z[i:i + batch].to(device))))
    return np.concatenate(out) if out else np.zeros((0, 0, 0, 3), np.uint8)


def load_generator(checkpoint: Path, device: torch.device | str = "cpu", ema: bool = True) -> tuple[Generator, TrainConfig]:
    """The (EMA, when present and `ema`) generator of a checkpoint, and the run's config."""
    ck = load_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(ck["config"])
    G = Generator(cfg.nz, cfg.size, cfg.g_channels)
    use_ema = ema and ck.get("G_ema") is not None
    G.load_state_dict(ck["G_ema"] if use_ema else ck["G"])
    log.info("loaded the %s generator of %s (step %d)", "EMA" if use_ema else "raw", checkpoint, ck["step"])
    return G.to(device), cfg


def generate(checkpoint: Path, out: Path, opts: GenerateOptions = GenerateOptions(), *, progress: bool = True) -> Path:
    """Write `opts.n` RGB PNGs (`00000.png`, ...) into the folder `out`, or into `out` as a zip
    when `opts.zip` (out then names the .zip file; `images.zip` inside `out` when it is a folder)."""
    from tqdm import tqdm

    if opts.n < 1 or opts.batch < 1:
        raise UserError(f"--n and --batch must be >= 1 (got {opts.n}, {opts.batch})")
    device = resolve_device(opts.device)
    G, cfg = load_generator(checkpoint, device, opts.ema)
    gen = torch.Generator().manual_seed(opts.seed)
    out = Path(out)
    if not opts.zip and out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: exists and is not a folder")
    from PIL import Image

    width = max(5, len(str(opts.n - 1)))
    with contextlib.ExitStack() as stack:
        if opts.zip:
            zpath = out if out.suffix == ".zip" else out / "images.zip"
            tmp = stack.enter_context(atomic_path(zpath))
            sink = stack.enter_context(zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED))
        else:
            stale = sorted(out.glob("*.png")) if out.is_dir() else []
            if stale:  # never mix two generations (FID would read both)
                raise UserError(f"-o {out}: already holds {len(stale)} PNG(s) from an earlier run; "
                                "choose a new folder (or --zip)")
            out.mkdir(parents=True, exist_ok=True)
        with tqdm(total=opts.n, unit="img", disable=not progress, desc="generate") as bar:
            for start in range(0, opts.n, opts.batch):
                z = torch.randn(min(opts.batch, opts.n - start), cfg.nz, generator=gen)
                for j, img in enumerate(sample(G, z, opts.batch)):
                    name = f"{start + j:0{width}d}.png"
                    buf = io.BytesIO()
                    Image.fromarray(img, "RGB").save(buf, format="PNG")
                    if opts.zip:
                        sink.writestr(name, buf.getvalue())
                    else:
                        write_bytes_atomic(out / name, buf.getvalue())
                bar.update(len(z))
    return zpath if opts.zip else out
