"""Embedding backends for `curate embed`, in a registry: a name -> a function of a batch of RGB
crops (PIL images) returning one vector each.

- `stats` needs no weights: colour (a 4x4x4 RGB histogram), edges (an 8-bin gradient-orientation
  histogram weighted by magnitude) and layout (a 4x4 grid of mean luma and of edge density),
  measured at `size` px; 104 numbers, deterministic, for offline machines and tests.
- `ultralytics` is the backbone of a YOLO model the user already has (`--weights yolo11n.pt`,
  or a `.yaml` for a random-init model with seeded weights: mechanics only): the output of its
  last backbone block (SPPF, stride 32), max-pooled over the picture (a MAC descriptor: the grey
  letterbox around the crop cannot dilute a maximum as it does a mean), read by a forward hook.
- `tflite` reads the same tensor out of a YOLO TFLite export (`--weights yolov8n.tflite`, as
  `curate detect` takes), made an output of the graph (`curate.embed_tflite`). Needs `ai-edge-litert`.

Every vector is L2-normalised, so cosine similarity is a dot product. A new backend is one
function and one `register` line (open_clip, timm, DINO with weights the user supplies).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import UserError


@dataclass(frozen=True)
class Backend:
    name: str
    embed: Callable[..., list[np.ndarray]]    # (images, size, weights) -> vectors
    needs_weights: bool
    doc: str


BACKENDS: dict[str, Backend] = {}


def register(b: Backend) -> Backend:
    BACKENDS[b.name] = b
    return b


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32).ravel()
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def stats_vector(img, size: int) -> np.ndarray:
    """The weightless embedding of one RGB image (see the module docstring)."""
    import cv2

    im = img.convert("RGB")
    im.thumbnail((size, size))
    rgb = np.asarray(im, dtype=np.uint8)
    colour = np.histogramdd(rgb.reshape(-1, 3), bins=(4, 4, 4), range=((0, 256),) * 3)[0].ravel()
    colour /= max(1.0, colour.sum())
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    mag, ang = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)
    edges = np.histogram(ang, bins=8, range=(0, np.pi), weights=mag)[0]
    edges /= max(1e-6, edges.sum())
    h, w = grey.shape
    ys, xs = np.linspace(0, h, 5).astype(int), np.linspace(0, w, 5).astype(int)
    strong = mag > 0.25
    luma_grid, edge_grid = [], []
    for i in range(4):
        for j in range(4):
            cell = (slice(ys[i], max(ys[i + 1], ys[i] + 1)), slice(xs[j], max(xs[j + 1], xs[j] + 1)))
            luma_grid.append(float(grey[cell].mean()))
            edge_grid.append(float(strong[cell].mean()))
    return _unit(np.concatenate([colour, edges, np.array(luma_grid) * 0.25, np.array(edge_grid) * 0.25]))


def _stats(images, size: int, weights=None) -> list[np.ndarray]:
    return [stats_vector(im, size) for im in images]


_models: dict[str, object] = {}    # weights path -> loaded model, per process


def check_ultralytics_weights(weights) -> None:
    if not weights:
        raise UserError("--backend ultralytics needs --weights: a YOLO .pt file (or a model .yaml for a "
                        "random-init model, for tests)")
    p = Path(str(weights))
    if p.suffix not in (".pt", ".yaml", ".yml"):
        hint = "; use --backend tflite for a .tflite export" if p.suffix == ".tflite" else ""
        raise UserError(f"--weights {weights}: ultralytics' embed needs a PyTorch model (.pt) or a .yaml; "
                        f"a {p.suffix or 'file without suffix'} export has no embedding layer{hint}")
    if p.suffix == ".pt" and not p.is_file():
        raise UserError(f"--weights {weights}: no such file")


def letterbox(img, w: int, h: int) -> np.ndarray:
    """The RGB image fitted into w x h on YOLO's grey (114), centred, as float32 HWC in 0..1."""
    from PIL import Image

    im = img.convert("RGB")
    im.thumbnail((w, h))
    canvas = Image.new("RGB", (w, h), (114, 114, 114))
    canvas.paste(im, ((w - im.width) // 2, (h - im.height) // 2))
    return np.asarray(canvas, dtype=np.float32) / 255.0


def check_tflite_weights(weights) -> None:
    if not weights or Path(str(weights)).suffix != ".tflite":
        raise UserError("--backend tflite needs --weights: a YOLO TFLite export (.tflite)")
    if not Path(str(weights)).is_file():
        raise UserError(f"--weights {weights}: no such file")
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        raise UserError("--backend tflite needs ai-edge-litert: pip install ai-edge-litert") from None


def _tflite(images, size: int, weights=None) -> list[np.ndarray]:
    from .embed_tflite import TFLiteCopies

    key = f"tflite:{weights}:{size}"
    if key not in _models:
        _models[key] = TFLiteCopies(str(weights), side=size)
    return _models[key](images)


def _ultralytics(images, size: int, weights=None) -> list[np.ndarray]:
    """The output of the model's SPPF block, max-pooled, as the `tflite` backend reads it from an
    export (ultralytics' own `embed` averages another layer): the crops letterboxed to `size` as
    for the TFLite model, one forward pass of the batch, on the GPU when there is one."""
    import torch

    key = str(weights)
    if key not in _models:
        from ultralytics import YOLO

        torch.manual_seed(0)                 # a .yaml model gets the same random weights every time
        net = YOLO(key).model.eval()
        sppf = next((m for m in net.modules() if type(m).__name__ == "SPPF"), None)
        if sppf is None:
            raise UserError(f"--weights {weights}: this model has no SPPF block to read features from")
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        _models[key] = (net.to(dev), sppf, dev)
    net, sppf, dev = _models[key]
    seen = []
    hook = sppf.register_forward_hook(lambda mod, inp, out: seen.append(out.detach().amax(dim=(2, 3))))
    try:
        x = np.stack([letterbox(im, size, size) for im in images]).transpose(0, 3, 1, 2)
        with torch.no_grad():
            net(torch.from_numpy(np.ascontiguousarray(x)).to(dev, dtype=next(net.parameters()).dtype))
    finally:
        hook.remove()
    return [_unit(v) for v in seen[0].float().cpu().numpy()]


register(Backend("stats", _stats, False, "colour, edge-orientation and layout statistics; no weights"))
register(Backend("ultralytics", _ultralytics, True, "a YOLO model's pooled backbone features (--weights .pt)"))
register(Backend("tflite", _tflite, True, "a YOLO TFLite export's SPPF features, max-pooled (--weights .tflite)"))
