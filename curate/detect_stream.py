"""Detect's pipeline: decode photos in a thread pool ahead of the detector, feed it batches of
same-shaped inputs, and give each photo a second, zoomed-out look when nothing was found."""
from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .detector_copies import Lender

log = logging.getLogger(__name__)


@dataclass
class Job:
    pos: int          # position of the base row in the manifest frame
    sample_id: str
    path: Path        # pixels to decode (repaired copy or original)
    sha256: str
    decoded_from: str  # "" for the original, else the repaired_path


def _decode(job: Job, det, imgsz: int):
    """(BGR array, model input, batch key, None) or (None, None, None, error text); runs in the pool."""
    import numpy as np
    from PIL import Image

    from .crop import decode_rgb

    try:
        rgb = decode_rgb(job.path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return None, None, None, f"{type(exc).__name__}: {exc}"
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    import cv2

    try:
        inp, key = det.prepare(bgr, imgsz)
    except (cv2.error, ValueError) as exc:
        return None, None, None, f"cannot prepare for the detector: {type(exc).__name__}: {exc}"
    return bgr, inp, key, None


def _prefetch(pool: ThreadPoolExecutor, fn, jobs, depth: int):
    """Yield (job, fn(job)) in order while up to `depth` calls run ahead in the pool."""
    it = iter(jobs)
    pending = deque()
    for job in it:
        pending.append((job, pool.submit(fn, job)))
        if len(pending) >= depth:
            break
    while pending:
        job, fut = pending.popleft()
        nxt = next(it, None)
        if nxt is not None:
            pending.append((nxt, pool.submit(fn, nxt)))
        yield job, fut.result()


def group_batches(items, key, size: int, window: int):
    """Group a stream into lists of at most `size` items with equal `key(item)`.

    A group is yielded when full; when `window` items are waiting, the largest
    group goes out early, so memory stays bounded whatever the mix of keys.
    """
    buckets: dict = {}
    waiting = 0
    for item in items:
        k = key(item)
        group = buckets.setdefault(k, [])
        group.append(item)
        waiting += 1
        if len(group) >= size:
            waiting -= len(buckets.pop(k))
            yield group
        elif waiting >= window:
            k = max(buckets, key=lambda b: len(buckets[b]))
            group = buckets.pop(k)
            waiting -= len(group)
            yield group
    yield from buckets.values()


@dataclass
class Detected:
    """One image through the detector: its detections, or why there are none."""

    job: Job
    bgr: object = None            # decoded pixels (BGR), None on failure
    dets: list | None = None
    status: str | None = None     # None when detected; not_decodable | error otherwise
    error: str | None = None
    look: str | None = None       # which look gave `dets`: first | padded | far


def stream_detections(det, jobs, **kw):
    """`detect_batches`, one `Detected` at a time."""
    for done in detect_batches(det, jobs, **kw):
        yield from done


def detect_batches(det, jobs, *, imgsz: int, conf: float, batch: int, workers: int,
                   looks: Looks | None = None, copies: list | None = None):
    """Decode `jobs` in a thread pool ahead of the detector and detect them in batches.

    Rectangular-input models get batches of images with the same letterboxed
    shape (see `Detector.prepare`); fixed-size models get batches in file order.
    With `copies` (separately loaded detectors, see `curate.detector_copies`) the
    batches are detected side by side, one copy per thread. Yields a list of
    `Detected` per batch, in order, and failures as soon as they are known.
    """
    copies = list(copies or [det])
    looks = looks or Looks()
    failures: deque[Detected] = deque()
    lender = Lender(copies)

    def decoded():
        for job, (bgr, inp, key, err) in _prefetch(pool, lambda j: _decode(j, det, imgsz), jobs,
                                                   depth=batch * len(copies) + workers):
            if bgr is None:
                failures.append(Detected(job, status="not_decodable", error=err))
                continue
            yield job, bgr, inp, key

    def detect(group: list) -> list[Detected]:
        with lender.lend() as d:
            return list(_detect_group(d, group, imgsz, conf, looks))

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool, \
            ThreadPoolExecutor(max_workers=len(copies), thread_name_prefix="detect") as runners:
        running: deque = deque()
        for group in group_batches(decoded(), key=lambda t: t[3], size=batch, window=2 * batch):
            running.append(runners.submit(detect, group))
            if failures:
                yield _drain(failures)
            if len(running) > len(copies):    # every copy busy and one batch waiting: take the oldest
                yield running.popleft().result()
        while running:
            yield running.popleft().result()
        if failures:
            yield _drain(failures)


def _drain(q: deque) -> list:
    out = list(q)
    q.clear()
    return out


@dataclass(frozen=True)
class Looks:
    """The looks after the first, where no motorbike is found yet (0: that look is off)."""

    second: float = 0.0     # the padded look's frame, share of the longer side per side
    second_box: float = 0.0  # the padded look also where the largest motorbike box covers less than this
    far: float = 0.0        # the far look's frame
    far_side: int = 0       # the far look only for images whose longer side is at most this (0: any)


def _detect_group(det, group: list, imgsz: int, conf: float, more: Looks = Looks()):
    """One predict call for the group; if it fails, image by image so one bad image is isolated."""
    try:
        all_dets = det.predict([t[2] for t in group], imgsz=imgsz, conf=conf,
                               orig_shapes=[t[1].shape[:2] for t in group])
        looks = ["first"] * len(group)
        if more.second:
            _look_again(det, group, all_dets, looks, imgsz, conf, more.second, small=more.second_box)
        if more.far:   # none yet in a thumbnail: much further out, at the run's own confidence
            _look_again(det, group, all_dets, looks, imgsz, conf, more.far, low=conf, name="far",
                        max_side=more.far_side)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        if len(group) == 1:
            yield Detected(group[0][0], bgr=group[0][1], status="error",
                           error=f"{type(exc).__name__}: {exc}")
            return
        log.warning("batch of %d failed (%s); retrying image by image", len(group), exc)
        for item in group:
            yield from _detect_group(det, [item], imgsz, conf, more)
        return
    for (job, bgr, _, _), dets, look in zip(group, all_dets, looks):
        yield Detected(job, bgr=bgr, dets=dets, look=look)


# The zoomed-out look accepts a motorbike from this confidence (when --conf is higher): on the
# labelled scrape it found 93 of the whole bikes the first look missed at 0.15 against 81 at 0.25,
# and no motorbike in any of 200 car photos either way (docs/agreement.md).
SECOND_LOOK_CONF = 0.15
# The far look is for thumbnails. A bike filling a 100 px photo, upscaled ~6x to the model's input, is
# too big and too soft for it; a third of the frame, it is found. On the web labels the far look found
# 12 whole bikes the person keeps and 1 cut-off bike in photos of at most 180 px, but mostly part
# close-ups, cut-off bikes and a car in larger ones (docs/agreement.md, item 11).
FAR_LOOK_SIDE = 200
# A detector that misses a bike filling the frame sometimes boxes only a part of it (a wheel, the
# front) or a small bike behind it. Where the largest motorbike box covers less than this share of
# the photo, the padded look runs too, and its detections replace the first look's where its largest
# motorbike box is at least SMALL_BOX_GROWTH times as large (docs/agreement.md, item 12).
SECOND_LOOK_BOX = 0.12
SMALL_BOX_GROWTH = 4.0


def _largest_bike(dets: list[dict], labels) -> float:
    """Area of the largest motorbike box in `dets` (0 without one)."""
    return max(((d["x1"] - d["x0"]) * (d["y1"] - d["y0"]) for d in dets if d["label"] in labels), default=0.0)


def pad_for_second_look(bgr, share: float):
    """The image in a grey frame (ultralytics' letterbox grey) of `share` x its longer side per side,
    and that pad in pixels."""
    import cv2

    pad = max(1, round(share * max(bgr.shape[:2])))
    return cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(114, 114, 114)), pad


def unpad(dets: list[dict], pad: int, width: int, height: int) -> list[dict]:
    """Detections on a padded image in the original image's pixels, clipped to it (empty ones dropped)."""
    out = []
    for d in dets:
        x0, x1 = (min(max(d[k] - pad, 0.0), float(width)) for k in ("x0", "x1"))
        y0, y1 = (min(max(d[k] - pad, 0.0), float(height)) for k in ("y0", "y1"))
        if x1 > x0 and y1 > y0:
            out.append({**d, "x0": x0, "y0": y0, "x1": x1, "y1": y1})
    return out


def _look_again(det, group: list, all_dets: list, looks: list, imgsz: int, conf: float, share: float, *,
                low: float | None = None, name: str = "padded", max_side: int = 0, small: float = 0.0):
    """Images where no look so far found a motorbike, detected again zoomed out (padded).

    A motorbike that fills the frame (a tight catalogue shot, a bike touching the
    borders) is often missed by a detector trained on objects with some context
    around them; the same image in a grey frame is found. Where this look finds
    a motorbike its detections replace the earlier ones (same objects, better seen),
    and `looks[i]` says `name`. A motorbike counts from confidence `low` (default:
    the lower of `conf` and SECOND_LOOK_CONF). `max_side`: only images whose longer side is at most
    this many pixels (0: any size). `small`: also images whose largest motorbike box covers less than
    this share of the image; there the new detections replace the old only where their largest
    motorbike box is SMALL_BOX_GROWTH times as large.
    """
    labels = det.motorbike_labels

    largest = [_largest_bike(dets, labels) for dets in all_dets]

    def again(i: int) -> bool:
        h, w = group[i][1].shape[:2]
        if max_side and max(h, w) > max_side:
            return False
        return largest[i] == 0 or largest[i] < small * w * h

    missed = [i for i in range(len(all_dets)) if again(i)]
    if not missed or not labels:  # a model with no motorbike class cannot find one zoomed out
        return
    padded, pads = [], []
    for i in missed:
        img, pad = pad_for_second_look(group[i][1], share)
        inp, _ = det.prepare(img, imgsz)
        padded.append((inp, img.shape[:2]))
        pads.append(pad)
    # rectangular-input models need equal input shapes in one call: one call per shape
    by_shape: dict = {}
    for k, (inp, _) in enumerate(padded):
        by_shape.setdefault(tuple(inp.shape), []).append(k)
    low = min(conf, SECOND_LOOK_CONF) if low is None else low
    for ks in by_shape.values():
        res = det.predict([padded[k][0] for k in ks], imgsz=imgsz, conf=low,
                          orig_shapes=[padded[k][1] for k in ks])
        for k, dets in zip(ks, res):
            i = missed[k]
            h, w = group[i][1].shape[:2]
            # the lower confidence is for the motorbike only; other objects as on the first look
            dets = [d for d in unpad(dets, pads[k], w, h) if d["label"] in labels or d["conf"] >= conf]
            found = _largest_bike(dets, labels)
            if found > 0 and (largest[i] == 0 or found >= SMALL_BOX_GROWTH * largest[i]):
                all_dets[i], looks[i] = dets, name
