"""The FID Inception v3 feature extractor (2048-d pool features), never a hang when weights are missing.

The network is torch-fidelity's `FeatureExtractorInceptionV3` (the TF-Inception port that pytorch-fid,
torch-fidelity and torchmetrics all use for FID/KID; torchmetrics' `NoTrainInceptionV3` is the same class).
It takes uint8 NCHW images of any size and resizes them to 299x299 with TF1-compatible bilinear
interpolation, so FID values are comparable with those libraries.

Where the weights come from, in this order (`resolve_weights`):

1. `--inception-weights PATH` (`inception_weights=PATH` in the API): a local file. Either torch-fidelity's
   `weights-inception-2015-12-05-6726825d.pth` or pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`
   (same network, same parameter names; loaded with `torch.load(..., weights_only=True)`).
2. The torch hub cache, which is where torch-fidelity and torchmetrics themselves download to:
   `$TORCH_HOME/hub/checkpoints/` (default `~/.cache/torch/hub/checkpoints/`; `torch.hub.get_dir()`),
   file `weights-inception-2015-12-05-6726825d.pth` (or pytorch-fid's file name there).
3. A download of torch-fidelity's file from `INCEPTION_URL` into that cache -- only when online. A quick
   TCP probe (`PROBE_TIMEOUT_S`) runs first and the download runs under a socket timeout, so offline
   this fails within seconds with `InceptionUnavailable`. With `MOTOCURATE_OFFLINE=1` (or `YOLO_OFFLINE=1`,
   which the test suite and CI set) no network connection is attempted at all.

To supply the weights on an offline machine: on any machine with internet,
`curl -LO https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth`,
copy the file over, and either pass `--inception-weights PATH` or put it into
`~/.cache/torch/hub/checkpoints/` (respecting `$TORCH_HOME`).

`RANDOM` ("random") builds the same network with seeded random weights: for tests only, its numbers are
not comparable with anything.
"""
from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from common.errors import UserError  # light: no pandas/pyarrow

log = logging.getLogger(__name__)

WEIGHTS_FILENAME = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity / torchmetrics
PYTORCH_FID_FILENAME = "pt_inception-2015-12-05-6726825d.pth"  # pytorch-fid
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILENAME}"
RANDOM = "random"
FEATURE_DIM = 2048
PROBE_TIMEOUT_S = 3.0
DOWNLOAD_SOCKET_TIMEOUT_S = 30.0
OFFLINE_ENV = ("MOTOCURATE_OFFLINE", "YOLO_OFFLINE")


class InceptionUnavailable(UserError):
    """The FID Inception weights cannot be had (missing file, offline, bad file). One line, how to fix."""


@dataclass(frozen=True)
class Weights:
    """Resolved weights: a local file, or `RANDOM`. `identity` keys caches of features made with them."""

    path: Path | None
    identity: str

    @property
    def is_random(self) -> bool:
        return self.path is None


def hub_checkpoint_dir() -> Path:
    """Where torch-fidelity/torchmetrics keep downloaded weights: `torch.hub.get_dir()/checkpoints`."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def cache_candidates() -> list[Path]:
    d = hub_checkpoint_dir()
    return [d / WEIGHTS_FILENAME, d / PYTORCH_FID_FILENAME]


def _offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in OFFLINE_ENV)


def how_to_supply(looked_in: Path) -> str:
    return (f"download {INCEPTION_URL} on a machine with internet and pass --inception-weights PATH "
            f"(or put it in {looked_in}/), or use --weightless for metrics that need no weights")


def _probe(url: str, timeout: float) -> bool:
    """Can we resolve the download host and open a TCP connection to it within `timeout` seconds?

    Runs in a daemon thread so that a slow DNS lookup (not covered by socket timeouts) cannot hang us.
    """
    import threading

    host = urlparse(url).hostname
    ok = threading.Event()

    def attempt():
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                ok.set()
        except OSError as exc:
            log.debug("connectivity probe to %s failed: %s", host, exc)

    t = threading.Thread(target=attempt, name="inception-probe", daemon=True)
    t.start()
    t.join(timeout)
    return ok.is_set()


def _download(url: str, dst: Path, timeout: float) -> None:
    import torch.hub

    dst.parent.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        # download_url_to_file writes a temp file in the same folder and renames it: atomic.
        torch.hub.download_url_to_file(url, str(dst), progress=True)
    except OSError as exc:
        raise InceptionUnavailable(f"downloading the FID Inception weights failed ({exc}); "
                                   + how_to_supply(dst.parent)) from exc
    finally:
        socket.setdefaulttimeout(old)


@functools.lru_cache(maxsize=8)
def _file_identity(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def _weights_from_file(p: Path) -> Weights:
    st = p.stat()
    return Weights(p.resolve(), _file_identity(str(p.resolve()), st.st_size, st.st_mtime_ns))


def resolve_weights(spec: str | os.PathLike | None = None, *, download: bool = True) -> Weights:
    """Find the weights (see the module docstring); raise `InceptionUnavailable` within seconds if none."""
    import importlib.util

    if importlib.util.find_spec("torch_fidelity") is None:
        raise InceptionUnavailable("FID needs torch-fidelity (its Inception v3 network): "
                                   "pip install torch-fidelity==0.4.0, or use --weightless")
    if spec is not None and str(spec) == RANDOM:
        return Weights(None, "random-init-seed0")
    if spec is not None:
        p = Path(spec).expanduser()
        if not p.is_file():
            raise InceptionUnavailable(f"--inception-weights {spec}: no such file; expected "
                                       f"{WEIGHTS_FILENAME} (torch-fidelity) or {PYTORCH_FID_FILENAME} (pytorch-fid)")
        return _weights_from_file(p)
    for c in cache_candidates():
        if c.is_file():
            log.info("FID Inception weights from the torch hub cache: %s", c)
            return _weights_from_file(c)
    target = cache_candidates()[0]
    if not download or _offline():
        reason = "offline mode is set" if _offline() else "downloads are disabled"
        raise InceptionUnavailable(f"FID Inception weights not found in {target.parent} and {reason}; "
                                   + how_to_supply(target.parent))
    if not _probe(INCEPTION_URL, PROBE_TIMEOUT_S):
        raise InceptionUnavailable(f"FID Inception weights not found in {target.parent} and "
                                   f"{urlparse(INCEPTION_URL).hostname} cannot be reached; "
                                   + how_to_supply(target.parent))
    log.warning("downloading the FID Inception weights to %s", target)
    _download(INCEPTION_URL, target, DOWNLOAD_SOCKET_TIMEOUT_S)
    return _weights_from_file(target)


def _load_state_dict(path: Path) -> dict:
    from ..checkpoint import load_torch_file

    sd = load_torch_file(path, "--inception-weights", kind="weights", error=InceptionUnavailable)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise InceptionUnavailable(f"--inception-weights {path}: expected a state dict, got {type(sd).__name__}")
    return sd


def _random_init(module, seed: int) -> None:
    """He-normal convolutions and default BatchNorm: activations keep their scale through the network."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=g)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01, generator=g)
                nn.init.zeros_(m.bias)


@functools.lru_cache(maxsize=1)
def _extractor_class():
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class FIDInceptionV3(FeatureExtractorInceptionV3):
        """torch-fidelity's network; the parameters come from us (weights_only load, or seeded random)."""

        def __init__(self, state_dict: dict | None, seed: int = 0):
            import torch

            object.__setattr__(self, "_incoming", (state_dict, seed))
            empty = io.BytesIO()
            torch.save({}, empty)
            empty.seek(0)
            # The parent loads whatever "path" we give it and hands it to load_state_dict (below).
            super().__init__("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty)

        def load_state_dict(self, state_dict, strict=True, assign=False):
            if "_incoming" not in self.__dict__:
                return super().load_state_dict(state_dict, strict=strict, assign=assign)
            sd, seed = self.__dict__.pop("_incoming")
            if sd is None:
                _random_init(self, seed)
                return None
            missing, unexpected = super().load_state_dict(sd, strict=False)
            missing = [k for k in missing if not k.endswith("num_batches_tracked")]
            if missing or unexpected:
                raise InceptionUnavailable(
                    f"the weights file is not the FID Inception v3 ({len(missing)} missing keys e.g. "
                    f"{missing[:2]}, {len(unexpected)} unexpected e.g. {unexpected[:2]})")
            return None

    return FIDInceptionV3


def build_extractor(weights: Weights, device: str = "cpu"):
    """The network in eval mode on `device`; call it on uint8 NCHW, it returns a (N, 2048) float32 tensor tuple."""
    sd = None if weights.is_random else _load_state_dict(weights.path)
    try:
        model = _extractor_class()(sd)
    except InceptionUnavailable as exc:
        raise InceptionUnavailable(f"--inception-weights {weights.path}: {exc}") from exc
    return model.to(device).eval()


@functools.lru_cache(maxsize=2)
def _cached_extractor(weights: Weights, device: str):
    return build_extractor(weights, device)


def resolve_device(device: str | None) -> str:
    """`--device` as in every command (see `common.devices`): Inception runs on the CPU or CUDA."""
    from common.devices import resolve_device as common_device

    return common_device(device, kinds=("cpu", "cuda"))


def extract_features(images, weights: Weights, *, device: str = "cpu", batch_size: int = 50,
                     progress: bool = False, desc: str = "inception") -> "np.ndarray":
    """uint8 NHWC (N, H, W, 3) -> float32 (N, 2048) pool features (the network's own precision); the same
    result for any batch size."""
    import numpy as np
    import torch
    from tqdm import tqdm

    images = np.asarray(images) if not hasattr(images, "shape") else images
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise UserError(f"expected uint8 images of shape (N, H, W, 3), got {images.dtype} {tuple(images.shape)}")
    if batch_size < 1:
        raise UserError(f"--batch {batch_size}: must be >= 1")
    device = resolve_device(device)
    model = _cached_extractor(weights, device)
    out = np.empty((len(images), FEATURE_DIM), dtype=np.float32)
    with torch.inference_mode():
        for i in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", disable=not progress):
            x = torch.from_numpy(np.array(images[i:i + batch_size])).to(device)
            (f,) = model(x.permute(0, 3, 1, 2).contiguous())
            out[i:i + len(x)] = f.float().cpu().numpy()
    return out
