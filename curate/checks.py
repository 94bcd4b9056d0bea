"""Quality checks: each is raw value -> score in [0, 1] -> flag (score >= threshold).

Every check is measured on the sample's final crop (the detect stage's crop,
else the repaired copy, else the original), resized so its longer side is
`MEASURE_SIDE` pixels, so that values are comparable across image sizes.
A higher score always means *more of the problem* (busier, blurrier, darker,
...); a flag is raised when score >= threshold. The raw value is kept so a new
threshold needs no image I/O (`curate.score.reflag`).

Where the detect stage has not run there is no bike box: busyness is then
measured on the border band of the image (the outer `BORDER` of each side,
where the background of a centred subject is), `small` and `crowded` are null.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

MEASURE_SIDE = 256
BORDER = 1 / 6
CANNY = (30, 90)
BUSY_THRESHOLD = 0.47    # balanced-accuracy cut between Caltech and CCTV crops (docs/calibration.md)


def _clip01(v: float) -> float:
    return float(min(1.0, max(0.0, v)))


def _ramp(raw: float, lo: float, hi: float) -> float:
    """0 at `lo`, 1 at `hi` (either direction), linear in between."""
    return _clip01((raw - lo) / (hi - lo))


def _log_ramp(raw: float, lo: float, hi: float) -> float:
    return _ramp(math.log(max(raw, 1e-9)), math.log(lo), math.log(hi))


@dataclass(frozen=True)
class Check:
    name: str
    description: str            # what the raw value is
    to_score: Callable[..., float]
    params: dict = field(default_factory=dict)   # arguments of to_score after raw
    threshold: float = 0.5      # flag when score >= threshold (calibrated where noted)

    def score(self, raw: float | None) -> float | None:
        if raw is None or (isinstance(raw, float) and math.isnan(raw)):
            return None
        return self.to_score(float(raw), **self.params)


# Registry: the names feed the CLI's --threshold choices and the manifest columns NAME_raw/_score/_flag.
CHECKS: dict[str, Check] = {}


def register(check: Check) -> Check:
    CHECKS[check.name] = check
    return check


register(Check(
    "busy", "background clutter outside the bike box (border band without a box), 0..1: mean of the "
    "tone entropy (32-bin luma histogram, / 5 bits) and the Canny(30, 90) edge density (/ 0.25, "
    "capped at 1), measured at <= 256 px without upscaling",
    _ramp, {"lo": 0.0, "hi": 1.0}, threshold=BUSY_THRESHOLD))  # from benchmarks/calibrate.py
register(Check(
    "blur", "variance of the Laplacian of the grey crop at 256 px (low = blurry)",
    _log_ramp, {"lo": 1000.0, "hi": 30.0}))            # score 0.5 at ~173
register(Check(
    "dark", "95th percentile of luma (0..1) in the bike box (the whole crop without one): low when "
    "even the highlights are dark; a black bike on black still has bright chrome and reflections",
    _ramp, {"lo": 0.55, "hi": 0.15}))                   # flag below 0.35
register(Check(
    "bright", "5th percentile of luma (0..1) in the bike box (the whole crop without one): high when "
    "even the shadows (tyres) are washed out",
    _ramp, {"lo": 0.45, "hi": 0.85}))                   # flag above 0.65
register(Check(
    "small", "longer side of the bike box in original-image pixels (null without a box)",
    _ramp, {"lo": 128.0, "hi": 32.0}))                  # flag below 80 px
register(Check(
    "aspect", "width / height of the final crop (scored on |log ratio|)",
    lambda raw, lo, hi: _ramp(abs(math.log(max(raw, 1e-9))), math.log(lo), math.log(hi)),
    {"lo": 1.25, "hi": 4.0}))                           # flag beyond ~2.24:1 either way
register(Check(
    "grey", "99th percentile of the chroma (max-min of R,G,B, 0..1) of the crop: 0 for greyscale "
    "content even when stored as RGB; colour photos have at least a few coloured pixels",
    _ramp, {"lo": 0.06, "hi": 0.01}))                   # flag below 0.035
register(Check(
    "crowded", "number of other detected objects (any class) overlapping the crop (null without "
    "detections)",
    _ramp, {"lo": 0.0, "hi": 4.0}))                     # flag at 2 or more


def _resized(img, side: int):
    """RGB uint8 array with the longer side = `side` (area resampling), and the scale used."""
    from PIL import Image

    w, h = img.size
    s = side / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    return np.asarray(img.convert("RGB").resize((nw, nh), Image.Resampling.BOX if s < 1
                                                else Image.Resampling.BILINEAR)), s


def busyness(img, box, side: int = MEASURE_SIDE) -> float | None:
    """Clutter of the background (outside `box`, or the border band without one), 0..1.

    Measured at most `side` px on the longer side and never upscaled (upscaling
    a small crop smooths its background away).
    """
    import cv2

    w, h = img.size
    s = min(1.0, side / max(w, h))
    rgb = np.asarray(img.convert("RGB").resize((max(1, round(w * s)), max(1, round(h * s))),
                                               _box_resample()))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    gh, gw = grey.shape
    if box is not None:
        x0, y0, x1, y1 = (v * s for v in box)
        # the bike's own outline sits on the box edge: keep a 3-pixel ring out of the background
        background = ~_box_mask(grey.shape, (x0 - 3, y0 - 3, x1 + 3, y1 + 3))
    else:
        bx, by = max(1, round(gw * BORDER)), max(1, round(gh * BORDER))
        background = ~_box_mask(grey.shape, (bx, by, gw - bx, gh - by))
    if background.sum() < 16:
        return None
    hist = np.bincount(grey[background] // 8, minlength=32) / background.sum()
    nz = hist[hist > 0]
    entropy = float(-(nz * np.log2(nz)).sum())
    edges = float((cv2.Canny(grey, *CANNY) > 0)[background].mean())
    return 0.5 * min(1.0, entropy / 5.0) + 0.5 * min(1.0, edges / 0.25)


def _box_resample():
    from PIL import Image

    return Image.Resampling.BOX


def _box_mask(shape, box) -> np.ndarray:
    h, w = shape
    m = np.zeros((h, w), dtype=bool)
    x0, y0, x1, y1 = box
    x0, y0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
    x1, y1 = min(w, int(math.ceil(x1))), min(h, int(math.ceil(y1)))
    if x1 > x0 and y1 > y0:
        m[y0:y1, x0:x1] = True
    return m


def measure_sample(img, box=None, *, box_orig_side: float | None = None, n_others: int | None = None,
                   side: int = MEASURE_SIDE) -> dict[str, float | None]:
    """Raw values of every check for one crop.

    `img` is the final crop (PIL image), `box` the bike box inside it in the
    crop's pixels (None without detection), `box_orig_side` the box's longer
    side in original pixels, `n_others` other detections overlapping the crop.
    Also returns `subject_frac` (box area / crop area, None without a box).
    """
    import cv2

    w, h = img.size
    rgb, s = _resized(img, side)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    luma = grey.astype(np.float32) / 255.0
    out: dict[str, float | None] = {}

    if box is not None:
        inner = _box_mask(grey.shape, [v * s for v in box])
        subject = inner if inner.any() else np.ones_like(inner)
        out["subject_frac"] = _clip01(inner.mean())
    else:
        subject = np.ones(grey.shape, dtype=bool)
        out["subject_frac"] = None

    out["busy"] = busyness(img, box, side)
    out["blur"] = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    lo, hi = np.percentile(luma[subject], [5, 95])
    out["dark"] = float(hi)
    out["bright"] = float(lo)
    out["small"] = float(box_orig_side) if box_orig_side is not None else None
    out["aspect"] = w / h
    chroma = (rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)).astype(np.float32) / 255.0
    out["grey"] = float(np.percentile(chroma, 99))
    out["crowded"] = float(n_others) if n_others is not None else None
    return out


def score_all(raw: dict[str, float | None], thresholds: dict[str, float] | None = None
              ) -> dict[str, float | bool | None]:
    """`NAME_raw`, `NAME_score`, `NAME_flag` for every registered check."""
    thresholds = thresholds or {}
    out: dict[str, float | bool | None] = {}
    for name, check in CHECKS.items():
        r = raw.get(name)
        sc = check.score(r)
        thr = thresholds.get(name, check.threshold)
        out[f"{name}_raw"] = r
        out[f"{name}_score"] = sc
        out[f"{name}_flag"] = None if sc is None else bool(sc >= thr)
    return out


def describe(thresholds: dict[str, float] | None = None) -> dict[str, dict]:
    """What goes into the write's params: per check its threshold, score mapping and raw meaning."""
    thresholds = thresholds or {}
    return {n: {"threshold": float(thresholds.get(n, c.threshold)), "flag_when": "score >= threshold",
                "score": getattr(c.to_score, "__name__", "custom"), "score_params": dict(c.params),
                "raw": c.description}
            for n, c in CHECKS.items()}
