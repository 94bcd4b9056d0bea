"""One process or a torchrun process group: which rank this is, data loaded once per machine,
work done on rank 0 and its result shared with every rank."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from common.devices import gan_device

from .config import UserError
from .data import TrainData, load_images


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """Single process, or the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = gan_device(device)
    if world == 1:
        return Dist(0, 1, dev)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), dev)


def load_on_ranks(size: int, d: Dist, data, manifest, progress: bool) -> TrainData:
    """The images; under DDP rank 0 goes first so that only one process (re)builds a stale pack."""
    if d.world > 1 and not d.main:
        dist.barrier()
    images = load_images(size, data=data, manifest=manifest, progress=progress and d.main)
    if d.world > 1 and d.main:
        dist.barrier()
    return images


def broadcast(obj, d: Dist):
    if d.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn, d: Dist):
    """`fn()` on rank 0, its first value broadcast to every rank. A failure there is raised on every
    rank (the others would otherwise wait in the broadcast forever): rank 0 raises it as it is."""
    value, rest, err, failure = None, None, None, None
    if d.main:
        try:
            value, rest = fn()
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the other ranks are told
            failure = exc
            err = str(exc) if isinstance(exc, UserError) else f"rank 0 failed: {type(exc).__name__}: {exc}"
    value, err = broadcast((str(value) if value is not None else None, err), d)
    if failure is not None:
        raise failure
    if err is not None:
        raise UserError(err)
    return value, rest
