"""Complete, atomically written checkpoints that load with `torch.load(..., weights_only=True)`.

A checkpoint holds G, D, the EMA generator, both optimisers, the step, the resolved config, the data
it was trained on, and every RNG state (torch CPU, CUDA, and the step generator with its sampler),
so `--resume` continues a killed run exactly. Only tensors and plain Python values go in.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from common.atomic import atomic_path

FORMAT = 1


def rng_states() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(path: Path, payload: dict) -> Path:
    """Write `payload` (plus the format number and RNG states) to `path` atomically."""
    path = Path(path)
    payload = {"format": FORMAT, "rng": rng_states(), **payload}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def load_torch_file(path: Path, what: str, kind: str = "checkpoint", error=None, map_location="cpu"):
    """`torch.load(path, weights_only=True)`; a file it cannot read (a photo, random bytes, a pickle
    of arbitrary objects) is one line: `error` (default UserError) naming `what` and `path`. PyTorch's
    own message is not passed on: it suggests `weights_only=False`, which would run code from the file."""
    import re

    from .config import UserError

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file; name it and stop
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise (error or UserError)(
                f"{what} {path}: refused: it holds pickled Python objects ({found.group(1)}) that are not "
                "plain tensors and could run code when loaded; nothing from it was run") from None
        raise (error or UserError)(f"{what} {path}: not a PyTorch {kind} file (torch.load cannot read it: "
                                   f"{type(exc).__name__})") from None


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    from .config import UserError

    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise UserError(f"checkpoint {path}: no such file")
    ck = load_torch_file(path, "checkpoint", map_location=map_location)
    if not isinstance(ck, dict) or ck.get("format") != FORMAT or "G" not in ck:
        raise UserError(f"checkpoint {path}: not a gan checkpoint of format {FORMAT}")
    return ck
