"""`--device` in every command: `auto` (CUDA when available, else the CPU), `cpu`, `cuda`, `cuda:N`,
`N`, or `mps`, checked against this machine. Torch is imported only when a device is resolved."""
from __future__ import annotations

from .errors import UserError

ALL_KINDS = ("cpu", "cuda", "mps")


def resolve_device(device: str | None, *, kinds: tuple[str, ...] = ALL_KINDS) -> str:
    """The device string torch takes (`cpu`, `cuda:N` or `mps`); a UserError naming the problem when
    this machine lacks it or the command cannot use it (`kinds`)."""
    import torch

    d = str(device if device is not None else "auto").strip().lower()
    if d in ("auto", ""):
        return "cuda:0" if "cuda" in kinds and torch.cuda.is_available() else "cpu"
    if d.isdigit():
        d = f"cuda:{d}"
    kind = d.split(":")[0]
    if kind not in ALL_KINDS or (kind != "cuda" and ":" in d):
        raise UserError(f"--device {device}: expected auto, cpu, cuda, cuda:N, N or mps")
    if kind not in kinds:
        raise UserError(f"--device {device}: this command runs on {' or '.join(kinds)}, not {kind}")
    if kind == "cpu":
        return "cpu"
    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(f"--device {device}: MPS is not available here (use --device auto or cpu)")
        return "mps"
    if not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available here (use --device auto or cpu)")
    try:
        index = int(d.split(":")[1]) if ":" in d else 0
    except ValueError:
        raise UserError(f"--device {device}: expected auto, cpu, cuda, cuda:N, N or mps") from None
    if index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return f"cuda:{index}"


def gan_device(device: str | None):
    """`resolve_device` for the GAN commands (CPU or CUDA), as a `torch.device`."""
    import torch

    return torch.device(resolve_device(device, kinds=("cpu", "cuda")))
