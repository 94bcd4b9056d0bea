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
# Calibrated on labelled scraped photos (benchmarks/agreement.py, docs/agreement.md). The busy
# measure told Caltech from CCTV (0.47) but not a person's busy_background from ordinary street and
# showroom photos: at no threshold were 30% of its rejects photos a person rejects. It is measured
# and shown, and flags only the extreme (score 1); `curate calibrate` moves it to a reviewer's taste.
BUSY_THRESHOLD = 1.0
CUT_OFF_THRESHOLD = 0.85  # border line under the box almost all bike: cut through, not touching
CLOSEUP_THRESHOLD = 0.92
# ... and whose picture is not among the folder's most ordinary (outlier rank >= CLOSEUP_RANK, where the
# embeddings exist): a whole bike framed tightly fills the frame too, but looks like the others. On the
# web labels the 5 photos a person keeps among 35 frame-filling boxes ranked 0.04-0.38, the 30 rejects
# 0.58-0.97 but one (docs/agreement.md, item 13).
CLOSEUP_RANK = 0.5
# A part shot fills the frame into a corner as a tight catalogue shot does; what tells them apart is
# that it does not look like the folder's whole bikes (docs/agreement.md): a box filling at least
# ODD_CLOSEUP_FILL of the frame into a corner, and an outlier rank of at least the threshold.
ODD_CLOSEUP_FILL = 0.5
ODD_CLOSEUP_THRESHOLD = 0.65   # 0.7 with the embeddings at 640 px; at 384 (item 15) 0.65 takes 6 more
#                                person-rejects and 1 keep on the web labels (docs/agreement.md, item 16)
SEVERAL_THRESHOLD = 0.4    # the second bike at least ~2/3 the main one's size each way
OUTLIER_OFF = 1.01         # above any score: the outlier check flags nothing until its precision is measured
#                            (set --threshold outlier=0.95, or let `curate calibrate` fit it to your tags)
# Headlines, banners and price tags over the picture (`curate text`, a real text detector): on the web
# labels, photos with >= 0.07 of their pixels under text lines were 22 of 24 photos a person rejects,
# most of them for a busy background (docs/agreement.md, item 14).
TEXT_SHARE = 0.07
FOREGROUND_DIFF = 40     # a border pixel this far (max over R, G, B) from the border's median is not background


def _clip01(v: float) -> float:
    return float(min(1.0, max(0.0, v)))


def _ramp(raw: float, lo: float, hi: float) -> float:
    """0 at `lo`, 1 at `hi` (either direction), linear in between."""
    return _clip01((raw - lo) / (hi - lo))


def _log_ramp(raw: float, lo: float, hi: float) -> float:
    return _ramp(math.log(max(raw, 1e-9)), math.log(lo), math.log(hi))


@dataclass(frozen=True)
class Check:
    """One check, defined here and nowhere else: what it measures, how that becomes a score, what a
    person calls it (the filter rule's title), and its default threshold.

    `from_row` checks are measured from the manifest row (the detections) in the main process on
    every run, without pixels; the others from the crop's pixels by `measure_sample`.
    """
    name: str
    title: str                  # human wording: reject reason title, saved view, report heading
    description: str            # what the raw value is
    to_score: Callable[..., float]
    params: dict = field(default_factory=dict)   # arguments of to_score after raw
    threshold: float = 0.5      # flag when score >= threshold (calibrated where noted)
    from_row: Callable[[dict], float | None] | None = None

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
    "busy", "busy background", "background clutter outside the bike box (border band without a box), 0..1: mean of the "
    "tone entropy (32-bin luma histogram, / 5 bits) and the Canny(30, 90) edge density (/ 0.25, "
    "capped at 1), measured at <= 256 px without upscaling",
    _ramp, {"lo": 0.0, "hi": 1.0}, threshold=BUSY_THRESHOLD))  # see BUSY_THRESHOLD
register(Check(
    "blur", "blurry", "variance of the Laplacian of the grey crop at 256 px (low = blurry)",
    _log_ramp, {"lo": 1000.0, "hi": 30.0}, threshold=0.8))   # flag below ~60 (0.5 was ~173: a sharp
                                                                # 150 px web photo measures ~100)
register(Check(
    "dark", "too dark", "95th percentile of luma (0..1) in the bike box (the whole crop without one): low when "
    "even the highlights are dark; a black bike on black still has bright chrome and reflections",
    _ramp, {"lo": 0.55, "hi": 0.15}))                   # flag below 0.35
register(Check(
    "bright", "too bright", "5th percentile of luma (0..1) in the bike box (the whole crop without one): high when "
    "even the shadows (tyres) are washed out",
    _ramp, {"lo": 0.45, "hi": 0.85}))                   # flag above 0.65
register(Check(
    "small", "too small", "longer side of the bike box in original-image pixels (null without a box)",
    _ramp, {"lo": 128.0, "hi": 32.0}, threshold=0.8))   # flag below ~51 px
register(Check(
    "aspect", "odd aspect ratio", "width / height of the final crop (scored on |log ratio|)",
    lambda raw, lo, hi: _ramp(abs(math.log(max(raw, 1e-9))), math.log(lo), math.log(hi)),
    {"lo": 1.25, "hi": 4.0}, threshold=0.6))            # flag beyond ~2.5:1 either way (a long
                                                        # side view with its margin is 2.4:1)
register(Check(
    "grey", "greyscale", "99th percentile of the chroma (max-min of R,G,B, 0..1) of the crop: 0 for greyscale "
    "content even when stored as RGB; colour photos have at least a few coloured pixels",
    _ramp, {"lo": 0.03, "hi": 0.0}))                    # flag below 0.015: a greyscale photo's chroma is
                                                        # JPEG noise; a black bike on white has a little
                                                        # real colour (0.016-0.033 on the web labels)
register(Check(
    "crowded", "crowded (other objects overlap the bike)", "number of other detected objects (any class) overlapping the crop (null without "
    "detections)",
    _ramp, {"lo": 0.0, "hi": 4.0}, threshold=1.0,       # flag at 4 or more: a rider and a passer-by
    from_row=lambda row: others_overlapping(row)))      # are ordinary
register(Check(
    "cut_off", "motorbike cut off", "where the bike box touches an image border: the share of that "
    "border line, under the box, which is not background (differs by > 40 in R, G or B from the "
    "median of the crop's border ring); the highest over the touched borders, 0 when none is touched "
    "(null without a box). A wheel touching the edge gives little; a bike cut through gives ~1",
    _ramp, {"lo": 0.0, "hi": 1.0}, threshold=CUT_OFF_THRESHOLD))
register(Check(
    "closeup", "close-up of a part", "share of the image the bike box covers when the box reaches a "
    "corner (touches a left or right and a top or bottom border) and its outlier rank (see `outlier`) is "
    f"at least {CLOSEUP_RANK:g} or unknown, else 0 (null without a box): a tank, seat or headlight shot "
    "fills the frame into its corners; a tightly framed whole bike does too, but looks like the folder's bikes",
    _ramp, {"lo": 0.0, "hi": 1.0}, threshold=CLOSEUP_THRESHOLD,
    from_row=lambda row: closeup(row)))
register(Check(
    "odd_closeup", "close-up unlike the other bikes", "the outlier rank (see `outlier`) of a sample whose bike "
    f"box fills at least {ODD_CLOSEUP_FILL:g} of the frame into a corner, else 0 (null without a box or before "
    "`curate embed`): a tank or headlight shot fills the frame like a tight catalogue shot, but its picture "
    "is unlike the folder's whole bikes",
    _ramp, {"lo": 0.0, "hi": 1.0}, threshold=ODD_CLOSEUP_THRESHOLD,
    from_row=lambda row: odd_closeup(row)))
register(Check(
    "several", "several motorbikes", "area of the largest other motorbike box (neither mostly inside the "
    "main one nor holding most of it) / the main box's area (0 alone, null without detections): several bikes of similar "
    "size, no single subject",
    _ramp, {"lo": 0.0, "hi": 1.0}, threshold=SEVERAL_THRESHOLD,
    from_row=lambda row: second_bike(row)))
register(Check(
    "text", "text over the picture", "share of the photo's pixels under the text lines RapidOCR's PP-OCR "
    "detector finds (`curate text`; null before it runs or without it): headlines, banners, captions and "
    "price tags of magazine thumbnails and adverts",
    _ramp, {"lo": 0.0, "hi": 2 * TEXT_SHARE}, threshold=0.5,
    from_row=lambda row: _present_float(row.get("text_share"))))
register(Check(
    "outlier", "odd one out", "rank (0..1, 1 = most unusual) of the sample's cosine distance to its k-th "
    "nearest primary sample in embedding space (`curate embed`; null before it runs): custom builds, "
    "odd angles, add-ons, toy bikes, and pictures that are no bike at all",
    _ramp, {"lo": 0.0, "hi": 1.0}, threshold=OUTLIER_OFF,
    from_row=lambda row: _present_float(row.get("outlier_rank"))))


def _present_float(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


# ---------------------------------------------------------------- row-based measures (detections)

def _box(d) -> list[float]:
    return [float(d["x0"]), float(d["y0"]), float(d["x1"]), float(d["y1"])]


def row_touch(row) -> tuple[bool, bool, bool, bool] | None:
    """Which image borders the row's bike box touches (None without a box)."""
    from .crop import touching
    from .row_jobs import _list

    box, w, h = _list(row.get("primary_box")), row.get("width"), row.get("height")
    if not box or w is None or h is None or (isinstance(w, float) and math.isnan(w)):
        return None
    return touching(box, w, h)


def others_overlapping(row) -> float | None:
    """Detections other than the row's bike that overlap its crop by >= 25% of their own area."""
    from .row_jobs import _list

    dets, primary, crop_box = _list(row.get("detections")), _list(row.get("primary_box")), _list(row.get("crop_box"))
    if dets is None:
        return 0.0 if isinstance(row.get("detect_status"), str) and crop_box else None
    if not crop_box:
        return None
    n = 0
    for d in dets:
        b = _box(d)
        if primary and all(abs(b[k] - float(primary[k])) < 0.5 for k in range(4)):
            continue
        area = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
        iw = min(b[2], crop_box[2]) - max(b[0], crop_box[0])
        ih = min(b[3], crop_box[3]) - max(b[1], crop_box[1])
        if area > 0 and iw > 0 and ih > 0 and iw * ih >= 0.25 * area:
            n += 1
    return float(n)


def corner_fill(row) -> float | None:
    """Share of the image the bike box covers when it reaches a corner, else 0 (None without a box)."""
    touch, frac = row_touch(row), row.get("box_area_frac")
    if touch is None or frac is None or (isinstance(frac, float) and math.isnan(frac)):
        return None
    left, top, right, bottom = touch
    return float(frac) if (left or right) and (top or bottom) else 0.0


def closeup(row) -> float | None:
    fill, rank = corner_fill(row), _present_float(row.get("outlier_rank"))
    if fill is None:
        return None
    return fill if rank is None or rank >= CLOSEUP_RANK else 0.0


def odd_closeup(row) -> float | None:
    fill, rank = corner_fill(row), _present_float(row.get("outlier_rank"))
    if fill is None or rank is None:
        return None
    return rank if fill >= ODD_CLOSEUP_FILL else 0.0


def second_bike(row, inside: float = 0.8) -> float | None:
    """Largest other motorbike box / the main box. Boxes mostly inside the main one are its parts, and
    boxes the main one is mostly inside are the same bike seen more loosely (with its rider or
    shadow): on the labels those were single bikes at ratios of 1.2-1.8."""
    from .detector import MOTORBIKE_LABELS
    from .row_jobs import _list

    dets, primary = _list(row.get("detections")), _list(row.get("primary_box"))
    if dets is None or not primary:
        return None
    px0, py0, px1, py1 = (float(v) for v in primary[:4])
    parea = max(1e-9, (px1 - px0) * (py1 - py0))
    best = 0.0
    for d in dets:
        if str(d.get("label", "")).lower() not in MOTORBIKE_LABELS:
            continue
        b = _box(d)
        if all(abs(b[k] - float(primary[k])) < 0.5 for k in range(4)):
            continue
        area = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
        iw = max(0.0, min(b[2], px1) - max(b[0], px0))
        ih = max(0.0, min(b[3], py1) - max(b[1], py0))
        if area <= 0 or iw * ih >= inside * min(area, parea):
            continue
        best = max(best, area / parea)
    return best


def row_raw(row) -> dict[str, float | None]:
    """Raw values of the checks measured from the row (detections, no pixels)."""
    return {n: c.from_row(row) for n, c in CHECKS.items() if c.from_row is not None}


def _resized(img, side: int):
    """RGB uint8 array of `img` (a `curate.decoded.Decoded`) with the longer side of its own size at
    `side` (area resampling), and the scale from its own size."""
    from PIL import Image

    w, h = img.size
    s = side / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    return np.asarray(img.convert("RGB").resize(
        (nw, nh), Image.Resampling.BOX if s < 1 else Image.Resampling.BILINEAR)), s


def busyness(img, box, side: int = MEASURE_SIDE, *, grey_at_side=None) -> float | None:
    """Clutter of the background (outside `box`, or the border band without one), 0..1.

    Measured at most `side` px on the longer side and never upscaled (upscaling
    a small crop smooths its background away). `img`: a PIL image or a
    `curate.decoded.Decoded` (`box` in the pixels of its own size); `grey_at_side`: the crop
    already reduced to `side` (area resampling) in grey, when the caller has it.
    """
    import cv2

    from .decoded import Decoded

    img = Decoded.of(img)
    w, h = img.size
    s = min(1.0, side / max(w, h))
    if grey_at_side is not None and s < 1.0:
        grey = grey_at_side
    else:
        rgb = np.asarray(img.convert("RGB").resize((max(1, round(w * s)), max(1, round(h * s))),
                                                   _box_resample()))
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    gh, gw = grey.shape
    if box is not None:
        x0, y0, x1, y1 = (v * s for v in box)
        # the bike's own outline sits on the box edge: keep a 3-pixel ring out of the background
        inner = _box_slices(grey.shape, (x0 - 3, y0 - 3, x1 + 3, y1 + 3))
    else:
        bx, by = max(1, round(gw * BORDER)), max(1, round(gh * BORDER))
        inner = _box_slices(grey.shape, (bx, by, gw - bx, gh - by))
    # the background is all but the inner rectangle: its counts are the whole's less the rectangle's
    # (the same integers as indexing with a mask, without making one)
    n = grey.size - (0 if inner is None else grey[inner].size)
    if n < 16:
        return None
    tones = grey // 8
    counts = np.bincount(tones.ravel(), minlength=32)
    edge = cv2.Canny(grey, *CANNY)
    n_edges = np.count_nonzero(edge)
    if inner is not None:
        counts = counts - np.bincount(tones[inner].ravel(), minlength=32)
        n_edges -= np.count_nonzero(edge[inner])
    hist = counts / n
    nz = hist[hist > 0]
    entropy = float(-(nz * np.log2(nz)).sum())
    edges = n_edges / n
    return 0.5 * min(1.0, entropy / 5.0) + 0.5 * min(1.0, edges / 0.25)


def _box_resample():
    from PIL import Image

    return Image.Resampling.BOX


def _box_slices(shape, box) -> tuple[slice, slice] | None:
    """The pixels of an array of `shape` that `box` (x0, y0, x1, y1, fractional) touches, as
    (rows, columns) slices; None when it covers none."""
    h, w = shape
    x0, y0, x1, y1 = box
    x0, y0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
    x1, y1 = min(w, int(math.ceil(x1))), min(h, int(math.ceil(y1)))
    return (slice(y0, y1), slice(x0, x1)) if x1 > x0 and y1 > y0 else None


def percentiles_u8(values: np.ndarray, qs) -> list[float]:
    """`np.percentile(values / 255, qs)` (linear interpolation) of uint8 values, from their histogram:
    ~10x faster than sorting, and the same to within 1e-7 (float32 rounding)."""
    cum = np.cumsum(np.bincount(values.ravel(), minlength=256))
    n = int(cum[-1])
    out = []
    for q in qs:
        h = (n - 1) * q / 100.0
        lo = int(math.floor(h))
        t = h - lo
        a, b = (float(np.searchsorted(cum, k, side="right")) / 255.0 for k in (lo, min(lo + 1, n - 1)))
        out.append(b - (b - a) * (1.0 - t) if t >= 0.5 else a + (b - a) * t)   # numpy's own lerp
    return out


def measure_sample(img, box=None, *, box_orig_side: float | None = None, n_others: int | None = None,
                   touch: tuple | None = None, side: int = MEASURE_SIDE) -> dict[str, float | None]:
    """Raw values of the pixel checks for one crop (and `crowded` when `n_others` is given).

    `img` is the final crop (a PIL image, or a `curate.decoded.Decoded`, which may have been
    decoded smaller), `box` the bike box inside it in the pixels of its own size (None without
    detection), `box_orig_side` the box's longer
    side in original pixels, `touch` which image borders (left, top, right,
    bottom) the box reaches (see `touching`; the crop reaches them there too).
    Also returns `subject_frac` (box area / crop area, None without a box).
    """
    import cv2

    from .decoded import Decoded

    img = Decoded.of(img)
    w, h = img.size
    rgb, s = _resized(img, side)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out: dict[str, float | None] = {}

    if box is not None:
        inner = _box_slices(grey.shape, [v * s for v in box])
        subject = grey if inner is None else grey[inner]
        out["subject_frac"] = 0.0 if inner is None else _clip01(subject.size / grey.size)
    else:
        subject = grey
        out["subject_frac"] = None

    out["busy"] = busyness(img, box, side, grey_at_side=grey)   # the same BOX reduction when s < 1
    out["blur"] = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    lo, hi = percentiles_u8(subject, (5, 95))
    out["dark"] = float(hi)
    out["bright"] = float(lo)
    out["small"] = float(box_orig_side) if box_orig_side is not None else None
    out["aspect"] = w / h
    r, g, b = cv2.split(rgb)            # contiguous planes: elementwise, ~3x numpy's strided channels
    chroma = cv2.subtract(cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b))    # uint8, max >= min
    out["grey"] = percentiles_u8(chroma, (99,))[0]
    if n_others is not None:
        out["crowded"] = float(n_others)
    out["cut_off"] = border_cut(rgb, None if box is None else [v * s for v in box], touch)
    return out


def border_cut(rgb: np.ndarray, box, touch) -> float | None:
    """How far the bike runs through the image borders it touches (the `cut_off` raw value).

    On each touched border, the pixels of the border line under the box's span
    that are not background (far from the median colour of the whole border
    ring), as a share of that border's length. A tyre touching the edge covers a
    few pixels of it; a bike cut through covers the span.
    """
    if box is None or touch is None:
        return None
    if not any(touch):
        return 0.0
    a = rgb.astype(np.int16)
    h, w = a.shape[:2]
    ref = np.median(np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]), axis=0)
    x0, y0, x1, y1 = box
    best = 0.0
    for touched, line, lo, hi in ((touch[0], a[:, 0], y0, y1), (touch[1], a[0], x0, x1),
                                  (touch[2], a[:, -1], y0, y1), (touch[3], a[-1], x0, x1)):
        lo, hi = max(0, int(math.floor(lo))), min(len(line), int(math.ceil(hi)))
        if not touched or hi <= lo:
            continue
        fg = np.abs(line[lo:hi] - ref).max(axis=1) > FOREGROUND_DIFF
        best = max(best, float(fg.sum()) / len(line))
    return best


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
