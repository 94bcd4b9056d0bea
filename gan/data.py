"""Training data: the packed uint8 array, held on the device, and the step's random draws.

The trainer never decodes an image while training: `load_images` returns the preprocess stage's
pack (N, size, size, 3) uint8, `to_device` puts it on the GPU once, and each step gathers a batch by
index. All randomness of a step (batch indices, noise, augmentation uniforms) comes from one
explicit CPU `torch.Generator` in `StepRandom`, whose state (with the epoch permutation and position)
goes into every checkpoint: a resumed run draws exactly the batch the killed run would have drawn.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainData:
    images: np.ndarray          # (N, size, size, 3) uint8, possibly memory-mapped
    source: str                 # what was loaded (for config.json / logs)
    key: str                    # identifies the content for caches (path, size, mtime)


def _check(arr: np.ndarray, size: int, what: str) -> None:
    if arr.ndim != 4 or arr.shape[3] != 3 or arr.dtype != np.uint8:
        raise UserError(f"{what}: expected a uint8 array of shape (N, {size}, {size}, 3), "
                        f"got {arr.dtype} {tuple(arr.shape)}")
    if arr.shape[1] != size or arr.shape[2] != size:
        raise UserError(f"{what}: images are {arr.shape[1]}x{arr.shape[2]} but the config trains at "
                        f"{size}x{size} (pass --size {arr.shape[1]} or re-pack at {size})")
    if arr.shape[0] == 0:
        raise UserError(f"{what}: the pack holds no images")


def load_images(size: int, *, data: Path | None = None, manifest: Path | None = None,
                progress: bool = True) -> TrainData:
    """The training images from a pack file (`--data`) or a manifest (packed first when stale)."""
    if (data is None) == (manifest is None):
        raise UserError("give exactly one of --data PACK.npy or --manifest MANIFEST.parquet")
    if manifest is not None:
        # Imported here: the manifest path needs pyarrow/pandas, `--data` training does not.
        from preprocess.pack import PrepOptions, ensure_pack, load_pack

        info = ensure_pack(Path(manifest), PrepOptions(size=size), progress=progress)
        path = Path(info.npy_path)
        arr, _ids = load_pack(path)
        what = f"pack of {manifest}"
        _check(arr, size, what)
        return TrainData(arr, str(path.resolve()), f"pack:{getattr(info, 'fingerprint', '') or path.resolve()}")
    else:
        path = Path(data)
        if not path.is_file():
            raise UserError(f"--data {path}: no such file")
        with open(path, "rb") as fh:
            is_npy = fh.read(6) == b"\x93NUMPY"
        if not is_npy:
            raise UserError(f"--data {path}: not a .npy pack (expected a uint8 (N, {size}, {size}, 3) array "
                            "saved by numpy, e.g. by `preprocess`)")
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise UserError(f"--data {path}: not a readable .npy array ({exc})") from None
        what = f"--data {path}"
    _check(arr, size, what)
    st = os.stat(path)
    return TrainData(arr, str(path.resolve()), f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}")


def to_device(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """The whole pack as one uint8 (N, H, W, 3) tensor on `device` (pinned and copied once on CUDA)."""
    arr = np.ascontiguousarray(images)
    if not arr.flags.writeable:          # a read-only memory map: copy it into memory once
        arr = np.array(arr)
    t = torch.from_numpy(arr)
    if t.device != torch.device(device) and torch.device(device).type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=False)


class EpochSampler:
    """Indices in shuffled epochs (like DataLoader(shuffle=True)); a batch may span two epochs."""

    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.gen = n, generator
        self.perm = torch.randperm(n, generator=generator)
        self.pos, self.epoch = 0, 0

    def next(self, batch: int) -> torch.Tensor:
        parts = []
        while batch > 0:
            if self.pos == self.n:
                self.perm = torch.randperm(self.n, generator=self.gen)
                self.pos, self.epoch = 0, self.epoch + 1
            take = min(batch, self.n - self.pos)
            parts.append(self.perm[self.pos:self.pos + take])
            self.pos += take
            batch -= take
        return torch.cat(parts)

    def state_dict(self) -> dict:
        return {"perm": self.perm.clone(), "pos": self.pos, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        if len(state["perm"]) != self.n:
            raise UserError(f"the checkpoint's sampler covers {len(state['perm'])} images, the data has {self.n}")
        self.perm, self.pos, self.epoch = state["perm"].clone(), int(state["pos"]), int(state["epoch"])


class StepRandom:
    """Every random number a training step needs, drawn on the CPU from one seeded generator.

    `draw()` returns the global batch's draws (all DDP ranks draw the same and keep their slice):
    `idx` (B,) int64, `z` (B, nz), `u_real` (B, 3) for flip/rotation, and `u_diff` (3, B, k) for
    DiffAugment of the D-step real, D-step fake and G-step fake images (k = 0 without DiffAugment).
    """

    def __init__(self, n_images: int, batch: int, nz: int, n_diff: int, seed: int):
        self.batch, self.nz, self.n_diff = batch, nz, n_diff
        self.gen = torch.Generator().manual_seed(seed)
        self.sampler = EpochSampler(n_images, self.gen)

    def draw(self) -> dict[str, torch.Tensor]:
        b = self.batch
        idx = self.sampler.next(b)
        z = torch.randn(b, self.nz, generator=self.gen)
        u_real = torch.rand(b, 3, generator=self.gen)
        u_diff = torch.rand(3, b, self.n_diff, generator=self.gen)
        return {"idx": idx, "z": z, "u_real": u_real, "u_diff": u_diff}

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.sampler.load_state_dict(state["sampler"])
