"""`curate detect`: find the motorbikes in every photo with YOLO and crop the primary one.

Images are decoded (and, for PyTorch models, letterboxed) in a thread pool
ahead of the detector and fed to it in lists of up to `batch` arrays, one
`predict` call per list; images with the same letterboxed shape share a list,
so no image is padded to a square (see `stream_detections`). Every detection is kept;
the *primary* motorbike is the `motorcycle` detection with the largest
area x confidence. Its crop (box + margin, clamped) is written as a PNG to
`cache/crops/` under a content address, and the fields needed to rebuild it
byte for byte are recorded (see `curate.crop.recrop`). With `per_image="all"`
each further motorbike whose box's shorter side is at least `min_size` px gets
its own row (`crop_index` 1..k, ranked the same way).

Resumable: rows already detected with the same `detect_key` are skipped, and the
manifest is rewritten atomically every `checkpoint_every` images and when the run
stops. The key covers the weights sha256, the options that change results (for
fixed-size exports such as TFLite the model's own input size, not `--imgsz`, which
they ignore) and, for a row decoded from a repaired copy, that copy's path (a
content address), so re-running repair with other options redoes the rows it changed.
A row whose pixels are gone (repaired copy or original vanished, or the file is no
longer decodable) is redone too.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from manifests.errors import UserError
from manifests.paths import present

from .work_lock import locks_manifest

log = logging.getLogger(__name__)

STAGE = "detect"
PER_IMAGE_MODES = ("primary", "all")
DONE_STATUSES = ("ok", "no_motorbike")   # resumed (skipped) when the key matches
PERSON_LABELS = frozenset({"person"})


@dataclass(frozen=True)
class DetectOptions:
    """Options of `curate detect` (the CLI takes its defaults from here)."""

    weights: str = "yolo11n.pt"      # weights file, stock ultralytics name, or model .yaml (random init)
    device: str = "auto"             # auto (CUDA when available), cpu, cuda, cuda:N, mps
    imgsz: int = 640                 # detector input size
    conf: float = 0.25               # minimum detection confidence
    batch: int = 16                  # images per predict call
    margin: float = 0.10             # crop margin, share of the box's width/height per side
    per_image: str = "primary"       # primary: one crop per image; all: one row per motorbike
    min_size: int = 32               # per_image=all: extra motorbikes need a box side >= this (px)
    workers: int | None = None       # decoding threads (default: min(4, CPUs))
    checkpoint_every: int = 256      # rewrite the manifest after this many images
    second_look: float = 0.25        # no motorbike found: pad each side by this share of the longer
                                     # side and detect again (a bike filling the frame is found
                                     # zoomed out; docs/agreement.md); 0 turns it off

    def validate(self) -> None:
        if not 32 <= self.imgsz <= 8192:
            raise UserError(f"--imgsz {self.imgsz}: expected 32..8192")
        if not 0.0 < self.conf <= 1.0:
            raise UserError(f"--conf {self.conf}: expected a value in (0, 1]")
        if not 1 <= self.batch <= 4096:
            raise UserError(f"--batch {self.batch}: expected 1..4096")
        if not 0.0 <= self.margin <= 2.0:
            raise UserError(f"--margin {self.margin}: expected 0..2")
        if self.per_image not in PER_IMAGE_MODES:
            raise UserError(f"--per-image {self.per_image}: expected one of {', '.join(PER_IMAGE_MODES)}")
        if self.min_size < 0:
            raise UserError(f"--min-size {self.min_size}: expected >= 0")
        if self.workers is not None and self.workers < 1:
            raise UserError(f"--workers {self.workers}: expected >= 1")
        if not 0.0 <= self.second_look <= 2.0:
            raise UserError(f"--second-look {self.second_look}: expected 0..2 (0 turns it off)")
        if self.checkpoint_every < 1:
            raise UserError(f"checkpoint_every {self.checkpoint_every}: expected >= 1")

    def result_params(self) -> dict:
        """The options that change what is recorded (part of the resume key)."""
        out = {"imgsz": self.imgsz, "conf": self.conf, "margin": self.margin,
               "per_image": self.per_image, "min_size": self.min_size}
        if self.second_look:
            out["second_look"] = self.second_look
            out["second_look_conf"] = min(self.conf, SECOND_LOOK_CONF)
        return out


def detect_key(weights_sha256: str, opts: DetectOptions, imgsz=None) -> str:
    """The run's resume key; `imgsz` is the size the model really takes when that is not
    `opts.imgsz` (a fixed-size export: its input size, or "fixed" when it cannot be read)."""
    from .crop import EDGE_PX, PNG_COMPRESS

    params = {**opts.result_params(), **({"imgsz": imgsz} if imgsz is not None else {})}
    blob = json.dumps({"weights": weights_sha256, **params, "edge_px": EDGE_PX,
                       "png": PNG_COMPRESS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def row_key(key: str, decoded_from: str) -> str:
    """A row's `detect_key`: the run's key, bound to the repaired copy it was decoded from (if any)."""
    if not decoded_from:
        return key
    return hashlib.sha256(f"{key}|{decoded_from}".encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- per-image analysis

def _box(d: dict) -> tuple[float, float, float, float]:
    return d["x0"], d["y0"], d["x1"], d["y1"]


def rank_motorbikes(dets: list[dict], motorbike_labels) -> list[dict]:
    """Motorbike detections, best first: largest area x confidence (the first is the primary)."""
    from .crop import box_area

    bikes = [d for d in dets if d["label"] in motorbike_labels]
    return sorted(bikes, key=lambda d: -box_area(_box(d)) * d["conf"])


def describe_bike(bike: dict, dets: list[dict], width: int, height: int, margin: float) -> dict:
    """The per-crop columns for one motorbike detection among all `dets` of its image."""
    from .crop import box_area, covered_fraction, is_cut_off, margin_box

    box = _box(bike)
    persons = [_box(d) for d in dets if d is not bike and d["label"] in PERSON_LABELS]
    others = [_box(d) for d in dets if d is not bike and d["label"] not in PERSON_LABELS]
    return {
        "primary_box": [float(v) for v in box],
        "box_area_frac": box_area(box) / float(width * height),
        "person_overlap": covered_fraction(box, persons),
        "other_overlap": covered_fraction(box, others),
        "cut_off": is_cut_off(box, width, height),
        "crop_box": list(margin_box(box, margin, width, height)),
    }


EMPTY_CROP = {"primary_box": None, "box_area_frac": None, "person_overlap": None,
              "other_overlap": None, "cut_off": None, "crop_box": None, "crop_path": None,
              "crop_sha256": None}


# --------------------------------------------------------------------------- the run

@dataclass
class _Job:
    pos: int          # position of the base row in the manifest frame
    sample_id: str
    path: Path        # pixels to decode (repaired copy or original)
    sha256: str
    decoded_from: str  # "" for the original, else the repaired_path


def _decode(job: _Job, det, imgsz: int):
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

    job: _Job
    bgr: object = None            # decoded pixels (BGR), None on failure
    dets: list | None = None
    status: str | None = None     # None when detected; not_decodable | error otherwise
    error: str | None = None
    look: str | None = None       # which look gave `dets`: first | padded


def stream_detections(det, jobs, *, imgsz: int, conf: float, batch: int, workers: int,
                      second_look: float = 0.0):
    """Decode `jobs` in a thread pool ahead of the detector and detect them in batches.

    Rectangular-input models get batches of images with the same letterboxed
    shape (see `Detector.prepare`); fixed-size models get batches in file order.
    Yields a `Detected` per job (failures as soon as they are known).
    """
    failures: deque[Detected] = deque()

    def decoded():
        for job, (bgr, inp, key, err) in _prefetch(pool, lambda j: _decode(j, det, imgsz), jobs,
                                                   depth=max(batch, workers)):
            if bgr is None:
                failures.append(Detected(job, status="not_decodable", error=err))
                continue
            yield job, bgr, inp, key

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        for group in group_batches(decoded(), key=lambda t: t[3], size=batch, window=2 * batch):
            while failures:
                yield failures.popleft()
            yield from _detect_group(det, group, imgsz, conf, second_look)
        while failures:
            yield failures.popleft()


def _detect_group(det, group: list, imgsz: int, conf: float, second_look: float = 0.0):
    """One predict call for the group; if it fails, image by image so one bad image is isolated."""
    try:
        all_dets = det.predict([t[2] for t in group], imgsz=imgsz, conf=conf,
                               orig_shapes=[t[1].shape[:2] for t in group])
        looks = ["first"] * len(group)
        if second_look:
            _look_again(det, group, all_dets, looks, imgsz, conf, second_look)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        if len(group) == 1:
            yield Detected(group[0][0], bgr=group[0][1], status="error",
                           error=f"{type(exc).__name__}: {exc}")
            return
        log.warning("batch of %d failed (%s); retrying image by image", len(group), exc)
        for item in group:
            yield from _detect_group(det, [item], imgsz, conf, second_look)
        return
    for (job, bgr, _, _), dets, look in zip(group, all_dets, looks):
        yield Detected(job, bgr=bgr, dets=dets, look=look)


# The zoomed-out look accepts a motorbike from this confidence (when --conf is higher): on the
# labelled scrape it found 93 of the whole bikes the first look missed at 0.15 against 81 at 0.25,
# and no motorbike in any of 200 car photos either way (docs/agreement.md).
SECOND_LOOK_CONF = 0.15


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


def _look_again(det, group: list, all_dets: list, looks: list, imgsz: int, conf: float, share: float):
    """Images where the first look found no motorbike, detected again zoomed out (padded).

    A motorbike that fills the frame (a tight catalogue shot, a bike touching the
    borders) is often missed by a detector trained on objects with some context
    around them; the same image in a grey frame is found. Where the second look finds
    a motorbike its detections replace the first look's (same objects, better seen).
    """
    labels = det.motorbike_labels
    missed = [i for i, dets in enumerate(all_dets) if not any(d["label"] in labels for d in dets)]
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
    low = min(conf, SECOND_LOOK_CONF)
    for ks in by_shape.values():
        res = det.predict([padded[k][0] for k in ks], imgsz=imgsz, conf=low,
                          orig_shapes=[padded[k][1] for k in ks])
        for k, dets in zip(ks, res):
            i = missed[k]
            h, w = group[i][1].shape[:2]
            # the lower confidence is for the motorbike only; other objects as on the first look
            dets = [d for d in unpad(dets, pads[k], w, h) if d["label"] in labels or d["conf"] >= conf]
            if any(d["label"] in labels for d in dets):
                all_dets[i], looks[i] = dets, "padded"


class _Run:
    """Accumulates results and writes the manifest (checkpoints and the final write)."""

    def __init__(self, m, manifest_path: Path, det, opts: DetectOptions, key: str):
        self.m, self.manifest_path, self.det, self.opts, self.key = m, manifest_path, det, opts, key
        self.results: dict[str, dict] = {}     # base sample_id -> detect columns
        self.extras: dict[str, list[dict]] = {}  # base sample_id -> extra crop rows
        self.common = {"detector": det.name, "weights_sha256": det.weights_sha256,
                       "ultralytics_version": det.ultralytics_version, "detect_key": key,
                       "crop_margin": float(opts.margin)}
        self.pending_writes = 0

    # ---- recording
    def record_failure(self, job: _Job, status: str, error: str) -> None:
        self.results[job.sample_id] = {**self.common, **EMPTY_CROP, "detect_status": status,
                                       "detect_look": None,
                                       "detect_key": row_key(self.key, job.decoded_from),
                                       "detect_error": error, "detections": None, "n_motorbikes": None}
        self.extras[job.sample_id] = []

    def record(self, job: _Job, bgr, dets: list[dict], base_row, look: str | None = "first") -> None:
        from manifests.ids import sample_id

        height, width = bgr.shape[:2]
        bikes = rank_motorbikes(dets, self.det.motorbike_labels)
        image_cols = {**self.common, "detections": dets, "n_motorbikes": len(bikes),
                      "detect_look": look,
                      "detect_error": None, "detect_key": row_key(self.key, job.decoded_from)}
        if not bikes:
            self.results[job.sample_id] = {**image_cols, **EMPTY_CROP, "detect_status": "no_motorbike"}
            self.extras[job.sample_id] = []
            return
        chosen = [bikes[0]]
        if self.opts.per_image == "all":
            chosen += [b for b in bikes[1:]
                       if min(b["x1"] - b["x0"], b["y1"] - b["y0"]) >= self.opts.min_size]
        rows = []
        for bike in chosen:
            cols = describe_bike(bike, dets, width, height, self.opts.margin)
            cols.update(self._write_crop(job, bgr, cols["crop_box"]))
            rows.append({**image_cols, **cols, "detect_status": "ok"})
        self.results[job.sample_id] = rows[0]
        extras = []
        for k, cols in enumerate(rows[1:], start=1):
            extra = {c: base_row[c] for c in self.file_columns}
            extra.update(cols)
            extra["crop_index"] = k
            extra["sample_id"] = sample_id(job.sha256, str(base_row["path"]), k)
            extras.append(extra)
        self.extras[job.sample_id] = extras

    def _write_crop(self, job: _Job, bgr, crop_box) -> dict:
        from manifests.atomic import write_bytes_atomic
        from manifests.paths import cache_file, relative_to_manifest

        from .crop import crop_digest, crop_png

        data = crop_png(bgr[:, :, ::-1], crop_box)
        target = cache_file(self.manifest_path, "crops", crop_digest(job.sha256, crop_box, job.decoded_from))
        sha = hashlib.sha256(data).hexdigest()
        if not (target.is_file() and target.stat().st_size == len(data)):
            write_bytes_atomic(target, data)
        return {"crop_path": relative_to_manifest(self.manifest_path, target), "crop_sha256": sha}

    @property
    def file_columns(self) -> list[str]:
        """Scan and repair columns, copied onto extra crop rows."""
        from manifests.schema import STAGE_COLUMNS

        names = {f.name for st in ("scan", "repair") for f in STAGE_COLUMNS[st]}
        return [c for c in self.m.df.columns if c in names]

    # ---- writing
    def frame(self):
        import numpy as np
        import pandas as pd

        from manifests.schema import STAGE_COLUMNS

        df = self.m.df
        detect_cols = [f.name for f in STAGE_COLUMNS["detect"]]
        done = set(self.results)
        # Extra crop rows of re-detected files are replaced by the new ones.
        if len(df) and done:
            base_ids = df.loc[df["crop_index"] == 0].set_index("path")["sample_id"]
            redone_paths = set(base_ids[base_ids.isin(done)].index)
            df = df[~((df["crop_index"] > 0) & df["path"].isin(redone_paths))]
        df = df.reset_index(drop=True)
        arrays = {}
        for c in detect_cols:
            arrays[c] = (np.array(df[c].to_numpy(dtype=object), dtype=object) if c in df.columns
                         else np.full(len(df), None, dtype=object))
        idx = pd.Index(df["sample_id"]).get_indexer(list(self.results))
        for i, res in zip(idx, self.results.values()):
            for c in detect_cols:
                arrays[c][i] = res.get(c)
        out = df.copy()
        for c in detect_cols:
            out[c] = pd.Series(arrays[c], index=out.index, dtype=object)
        extra_rows = [r for rows in self.extras.values() for r in rows]
        if extra_rows:
            out = pd.concat([out, pd.DataFrame(extra_rows)], ignore_index=True)
            # Extra rows follow their file's row.
            order = {p: i for i, p in enumerate(out.loc[out["crop_index"] == 0, "path"])}
            out["_o"] = out["path"].map(order)
            out = out.sort_values(["_o", "crop_index"], kind="stable").drop(columns="_o")
        return out.reset_index(drop=True)

    def write(self, params: dict):
        from manifests.io import Manifest, write_manifest

        m = Manifest(df=self.frame(), root=self.m.root, history=self.m.history, path=self.manifest_path)
        write_manifest(m, self.manifest_path, stage=STAGE, params=params, input_path=self.manifest_path)
        self.m.history = m.history
        self.pending_writes = 0


def _already_done(r: dict, job: _Job, key: str, folder: Path) -> bool:
    """Detected with this key from this decoded source, which is still there, and its crop too."""
    status = r.get("detect_status")
    if not (present(r.get("detect_key")) and r["detect_key"] == row_key(key, job.decoded_from)
            and present(status) and status in DONE_STATUSES and job.path.is_file()):
        return False
    cp = r.get("crop_path")
    return status != "ok" or (present(cp) and (folder / str(cp)).is_file())


def _select(m, key: str, folder: Path) -> tuple[list, list]:
    """Split base rows into (jobs to decode, not-decodable jobs); skip rows already done with `key`."""
    from manifests.paths import decoded_path

    df = m.df
    root = Path(m.root) if m.root else folder
    todo, undecodable = [], []
    for pos, r in enumerate(df.to_dict("records")):
        if int(r["crop_index"]) != 0:
            continue
        repaired = present(r.get("repaired_path"))
        job = _Job(pos=pos, sample_id=str(r["sample_id"]), path=decoded_path(folder, root, r),
                   sha256=str(r["sha256"]) if present(r.get("sha256")) else f"id:{r['sample_id']}",
                   decoded_from=str(r["repaired_path"]) if repaired else "")
        if r["status"] != "ok" and not repaired:
            undecodable.append((job, f"scan status {r['status']}, no repaired copy"))
        elif not _already_done(r, job, key, folder):
            todo.append(job)
    return todo, undecodable


@locks_manifest()
def detect_manifest(manifest_path: Path, opts: DetectOptions = DetectOptions(), *,
                    progress: bool = True, detector=None):
    """Detect motorbikes for every file of the manifest, crop them, update the manifest in place.

    `detector` (a `curate.detector.Detector`) may be passed to reuse a loaded
    model; otherwise it is loaded from `opts.weights` / `opts.device`.
    Returns the re-read `Manifest`.
    """
    from tqdm.auto import tqdm

    from manifests.io import read_manifest

    from .detector import load_detector

    opts.validate()
    manifest_path = Path(manifest_path)
    m = read_manifest(manifest_path)
    if m.df.empty:
        raise UserError(f"{manifest_path}: the manifest has no rows (was the folder empty?)")
    det = detector if detector is not None else load_detector(opts.weights, opts.device, imgsz=opts.imgsz)
    imgsz = None  # the size the model really takes, when it is not opts.imgsz
    if not det.rect:  # a fixed-size export: ultralytics feeds it its own size whatever imgsz says
        size = det.input_size
        imgsz = "fixed" if size is None else size[0] if size[0] == size[1] else list(size)
        if imgsz != opts.imgsz:
            log.warning("--imgsz %d is ignored: %s takes a fixed input size (%s)", opts.imgsz, det.name,
                        "unknown" if size is None else f"{size[1]}x{size[0]} px")
    key = detect_key(det.weights_sha256, opts, imgsz)
    params = {**{k: v for k, v in asdict(opts).items() if k not in ("workers", "checkpoint_every")},
              "imgsz": opts.imgsz if imgsz is None else imgsz, "device": det.device,
              "detector": det.name, "weights_sha256": det.weights_sha256,
              "ultralytics_version": det.ultralytics_version, "detect_key": key,
              "primary": "largest area x confidence among 'motorcycle' detections"}
    folder = m.folder
    todo, undecodable = _select(m, key, folder)
    run = _Run(m, manifest_path, det, opts, key)
    for job, why in undecodable:
        run.record_failure(job, "not_decodable", why)
    n_skipped = int((m.df["crop_index"] == 0).sum()) - len(todo) - len(undecodable)
    if n_skipped:
        log.info("resuming: %d file(s) already detected with the same weights and options", n_skipped)
    rows = m.df
    workers = opts.workers or min(4, os.cpu_count() or 1)
    bar = tqdm(total=len(todo), desc="detect", unit="img", disable=not progress)
    try:
        for d in stream_detections(det, todo, imgsz=opts.imgsz, conf=opts.conf, batch=opts.batch,
                                   workers=workers, second_look=opts.second_look):
            if d.status is None:
                run.record(d.job, d.bgr, d.dets, rows.iloc[d.job.pos], d.look)
            else:
                run.record_failure(d.job, d.status, d.error)
            _tick(run, bar, 1, params)
    finally:
        bar.close()
        run.write(params)  # also on an interrupt: what was done is kept
    out = read_manifest(manifest_path)
    counts = out.df["detect_status"].value_counts()
    log.info("detect: %s", ", ".join(f"{k} {int(v)}" for k, v in sorted(counts.items())))
    return out


def _tick(run: _Run, bar, n: int, params: dict) -> None:
    bar.update(n)
    run.pending_writes += n
    if run.pending_writes >= run.opts.checkpoint_every:
        run.write(params)
