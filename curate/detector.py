"""Load an ultralytics YOLO detector: find the weights, hash them, pick the device, run batches.

Weights are looked up, in order: the given path; ultralytics' weights folder
(`yolo settings weights_dir`); a download of a stock ultralytics asset name
(`yolo11n.pt`, ...) when online. Offline, or when the download fails, a
`UserError` says how to pass a local file with `--weights` within seconds.
A `.yaml` model config gives a randomly initialised model (seeded, for tests
and benchmarks). Heavy imports (torch, ultralytics) happen inside functions.
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.devices import resolve_device
from common.errors import UserError
from manifests.ids import file_sha256

from .detector_litert import direct_litert

log = logging.getLogger(__name__)

MOTORBIKE_LABELS = frozenset({"motorcycle", "motorbike"})
DOWNLOAD_HOST = ("github.com", 443)
ONLINE_TIMEOUT_S = 3.0
RANDOM_INIT_SEED = 0

DEFAULT_WEIGHTS = "yolo11n.pt"   # ultralytics downloads it when online
_HOW = "pass a local weights file with --weights PATH (e.g. --weights ~/models/yolo11n.pt)"


@dataclass
class Detector:
    """A loaded detector and what identifies it in the manifest."""

    name: str                 # e.g. "ultralytics:yolo11n.pt"
    path: Path                # resolved weights file (or model yaml)
    weights_sha256: str
    ultralytics_version: str
    device: str               # resolved: "cpu", "cuda:0", ...
    names: dict[int, str] = field(repr=False)
    model: object = field(repr=False)
    rect: bool = False        # takes rectangular input (PyTorch, dynamic exports); else a fixed square
    stride: int = 32
    input_size: tuple[int, int] | None = None  # (h, w) of a fixed-size export, from its metadata
    format: str = "pt"        # ultralytics' name of the model's format: pt, tflite, onnx, ...
    direct: object = field(default=None, repr=False)   # a `DirectLiteRT` where the export fits one

    @property
    def motorbike_labels(self) -> set[str]:
        return {n for n in self.names.values() if str(n).lower() in MOTORBIKE_LABELS}

    def prepare(self, bgr, imgsz: int):
        """(model input, batch key) for one BGR image; thread-safe, meant for the decode threads.

        For rectangular-input models this is ultralytics' own minimum-rectangle
        letterbox (what a one-image `predict` does); images whose letterboxed
        shapes match (the key) can share a batch without being padded to a
        square. Fixed-size models take the image as it is (key None).
        """
        if not self.rect:
            return bgr, None
        from ultralytics.data.augment import LetterBox
        from ultralytics.utils.checks import check_imgsz

        size = check_imgsz(imgsz, stride=self.stride, min_dim=2)
        out = LetterBox(size, auto=True, stride=self.stride)(image=bgr)
        return out, tuple(out.shape[:2])

    def predict(self, images: list, *, imgsz: int, conf: float, orig_shapes: list | None = None
                ) -> list[list[dict]]:
        """Detect objects in a batch of BGR uint8 arrays with one `predict` call.

        `orig_shapes` (h, w) maps boxes of `prepare`d images back to the original
        pixels. Returns, per image, dicts `label, conf, x0, y0, x1, y1`, highest
        confidence first.
        """
        if not images:
            return []
        if self.direct is not None:
            return [self._dicts(pred.numpy(), self.names) for pred in self.direct(images, conf)]
        from ultralytics.utils.ops import scale_boxes

        results = self.model.predict(images, imgsz=imgsz, conf=conf, device=self.device,
                                     batch=len(images), verbose=False)
        shapes = orig_shapes or [None] * len(images)
        out = []
        for res, shape in zip(results, shapes):
            boxes = res.boxes
            if boxes is None or len(boxes) == 0:
                out.append([])
                continue
            xyxy = boxes.xyxy.clone()
            if shape is not None and tuple(shape) != tuple(res.orig_shape):
                xyxy = scale_boxes(tuple(res.orig_shape), xyxy, tuple(shape))
            pred = np.column_stack([xyxy.cpu().numpy(), boxes.conf.cpu().numpy(), boxes.cls.cpu().numpy()])
            out.append(self._dicts(pred, res.names or self.names))
        return out

    @staticmethod
    def _dicts(pred, names: dict) -> list[dict]:
        """Rows x0, y0, x1, y1, conf, class as detection dicts, highest confidence first."""
        dets = [{"label": str(names.get(int(c), int(c))), "conf": float(p),
                 "x0": float(x0), "y0": float(y0), "x1": float(x1), "y1": float(y1)}
                for x0, y0, x1, y1, p, c in pred.tolist()]
        dets.sort(key=lambda d: -d["conf"])
        return dets


def _quiet_ultralytics() -> None:
    """Before ultralytics is first imported: never pip-install packages into the user's environment
    at run time (ultralytics does by default); a user who wants that sets YOLO_AUTOINSTALL=1."""
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")


def _ultralytics_weights_dir() -> Path:
    _quiet_ultralytics()
    from ultralytics.utils import SETTINGS

    return Path(SETTINGS["weights_dir"])


def _is_online() -> bool:
    """Quick check (a few seconds at most) that the download host can be reached."""
    if os.environ.get("YOLO_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(DOWNLOAD_HOST, timeout=ONLINE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _check_readable(p: Path) -> Path:
    if p.is_dir():
        return p  # exported model folders (saved_model, openvino, ...) are passed on as they are
    try:
        with open(p, "rb") as f:
            head = f.read(1)
    except OSError as exc:
        raise UserError(f"cannot read weights file {p}: {exc.strerror or exc}; {_HOW}") from exc
    if not head:
        raise UserError(f"weights file {p} is empty; {_HOW}")
    return p


def _model_suffixes() -> list[str]:
    """Name endings ultralytics loads a model from (its export formats, as `AutoBackend` matches them)."""
    _quiet_ultralytics()
    from ultralytics.engine.exporter import export_formats

    return [*export_formats()["Suffix"], ".mlmodel"]


def _check_kind(spec: str, p: Path) -> None:
    """Refuse a name ultralytics would not load (a photo, say) before any work is done."""
    name = p.name.lower()
    if not p.suffix and not p.is_file():     # a stem such as `yolo11n`: ultralytics adds `.pt`
        return
    suffixes = _model_suffixes()
    if any(s in name for s in suffixes):
        return
    files = [s for s in suffixes if s.startswith(".")]
    folders = [f"*{s}/" for s in suffixes if s.endswith("_model")]
    raise UserError(f"--weights {spec}: not a model ultralytics can load; expected a weights file "
                    f"({', '.join(files)}), a model config (.yaml, random init) or an exported model "
                    f"folder ({', '.join(folders)})")


def resolve_weights(spec: str | os.PathLike) -> Path:
    """The local file for `spec`, downloading a stock ultralytics asset when online.

    Raises `UserError` (within seconds) when it cannot be had, or when its name is not
    one of the kinds ultralytics loads.
    """
    spec = str(spec)
    p = Path(spec).expanduser()
    if p.suffix.lower() in (".yaml", ".yml"):
        return _resolve_yaml(spec)
    _check_kind(spec, p)
    if p.exists():
        return _check_readable(p)
    if p.parent != Path("."):
        raise UserError(f"weights file not found: {spec}; {_HOW}")
    cached = _ultralytics_weights_dir() / p.name
    if cached.is_file():
        return _check_readable(cached)
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

    if p.name not in GITHUB_ASSETS_NAMES:
        raise UserError(f"weights file not found: {spec} (and not a stock ultralytics model name); {_HOW}")
    if not _is_online():
        raise UserError(f"cannot download {p.name}: offline (no route to {DOWNLOAD_HOST[0]}); {_HOW}")
    return _download(p.name, cached)


def _download(name: str, target: Path) -> Path:
    from ultralytics.utils.downloads import attempt_download_asset

    log.info("downloading %s to %s", name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        got = Path(attempt_download_asset(target, retry=1))
    except (OSError, RuntimeError) as exc:  # ConnectionError and requests' errors are OSErrors
        raise UserError(f"cannot download {name}: {exc}; {_HOW}") from exc
    if not got.is_file():
        raise UserError(f"cannot download {name}; {_HOW}")
    return got


def _resolve_yaml(spec: str) -> Path:
    """The model config file ultralytics would build `spec` from (`yolo11n.yaml` -> its `yolo11.yaml`)."""
    import re

    from ultralytics.utils.checks import check_yaml

    unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", spec)  # scale letter lives in the name
    try:
        found = check_yaml(spec, hard=False) or check_yaml(unified, hard=False)
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise UserError(f"model config not found: {spec}; {_HOW}") from exc
    if not found:
        raise UserError(f"model config not found: {spec}; {_HOW}")
    return Path(found)


def weights_sha256(spec: str | os.PathLike, path: Path) -> str:
    """sha256 of the weights file; of a folder's files; of a yaml config + the name's scale + seed."""
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        h = hashlib.sha256(path.read_bytes())
        h.update(f"|{Path(str(spec)).name}|seed={RANDOM_INIT_SEED}".encode())
        return h.hexdigest()
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(f"{f.relative_to(path).as_posix()}:{file_sha256(f)}\n".encode())
        return h.hexdigest()
    return file_sha256(path)


def _fixed_input_size(backend) -> tuple[int, int] | None:
    """(h, w) that a fixed-size export takes (its export metadata, as ultralytics' predictor uses)."""
    size = getattr(backend, "imgsz", None)
    if isinstance(size, int):
        return size, size
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size):
        return int(size[0]), int(size[1])
    return None


def load_detector(weights: str | os.PathLike = DEFAULT_WEIGHTS, device: str = "auto", *,
                  imgsz: int = 640) -> Detector:
    """Resolve, hash and load the weights, and run one tiny warm-up image to fail fast."""
    import torch

    _quiet_ultralytics()
    import ultralytics
    from ultralytics import YOLO

    path = resolve_weights(weights)
    dev = resolve_device(device)
    sha = weights_sha256(weights, path)
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_INIT_SEED)
                model = YOLO(str(weights), task="detect")
            name = f"ultralytics:{Path(str(weights)).name}(random-init)"
        else:
            model = YOLO(str(path), task="detect")
            name = f"ultralytics:{path.name}"
        if model.task not in ("detect", "segment", "pose"):
            raise UserError(f"--weights {weights}: a {model.task!r} model has no boxes; use a detection model")
        model.predict([np.zeros((64, 64, 3), dtype=np.uint8)], imgsz=imgsz, device=dev, verbose=False)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any loader failure is a bad weights file for the user
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load weights {path}: {msg}; {_HOW}") from exc
    names = {int(k): str(v) for k, v in dict(model.names).items()}
    backend = model.predictor.model
    rect = backend.format == "pt" or bool(getattr(backend, "dynamic", False))
    stride = int(max(getattr(backend, "stride", 32), 32)) if rect else 32
    det = Detector(name=name, path=path, weights_sha256=sha, ultralytics_version=ultralytics.__version__,
                   device=dev, names=names, model=model, rect=rect, stride=stride,
                   input_size=None if rect else _fixed_input_size(backend), format=str(backend.format))
    det.direct = direct_litert(model) if dev == "cpu" and not rect else None
    if not det.motorbike_labels:
        log.warning("%s has no 'motorcycle' class: no image will get a motorbike crop", name)
    return det
