"""`curate detect`: find the motorbikes in every photo with YOLO and crop the primary one.

Images are decoded (and, for PyTorch models, letterboxed) in a thread pool
ahead of the detector and fed to it in lists of up to `batch` arrays, one
`predict` call per list; images with the same letterboxed shape share a list,
so no image is padded to a square (see `detect_batches`). Every detection is kept;
the *primary* motorbike is the `motorcycle` detection with the largest
area x confidence. Its crop (box + margin, clamped) is written as a PNG to
`cache/crops/` under a content address, and the fields needed to rebuild it
byte for byte are recorded (see `curate.crop.recrop`). With `per_image="all"`
each further motorbike whose box's shorter side is at least `min_size` px gets
its own row (`crop_index` 1..k, ranked the same way).

Resumable: rows already detected with the same `detect_key` are skipped, the
manifest is rewritten atomically every `checkpoint_every` images and when the run
stops, and what a killed run finished comes back from its journal (`curate.row_stage`). The key covers the weights sha256, the options that change results (for
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
from dataclasses import asdict, dataclass
from pathlib import Path

from common.errors import UserError
from manifests.paths import present

from . import engine
from .detector import DEFAULT_WEIGHTS
from .detector_copies import detector_copies
from .detect_results import DONE_STATUSES, STAGE, DetectResults, row_key
from .detect_stream import FAR_LOOK_SIDE, SECOND_LOOK_BOX, SECOND_LOOK_CONF, Job, Looks, detect_batches
from .row_stage import Journal, run_chunks
from .work_lock import locks_manifest

log = logging.getLogger(__name__)

PER_IMAGE_MODES = ("primary", "all")


@dataclass(frozen=True)
class DetectOptions:
    """Options of `curate detect` (the CLI takes its defaults from here)."""

    weights: str = DEFAULT_WEIGHTS      # weights file, stock ultralytics name, or model .yaml (random init)
    device: str = "auto"             # auto (CUDA when available), cpu, cuda, cuda:N, mps
    imgsz: int = 640                 # detector input size
    conf: float = 0.25               # minimum detection confidence
    batch: int = 16                  # images per predict call
    margin: float = 0.10             # crop margin, share of the box's width/height per side
    per_image: str = "primary"       # primary: one crop per image; all: one row per motorbike
    min_size: int = 32               # per_image=all: extra motorbikes need a box side >= this (px)
    workers: int | None = None       # decoding threads (default: min(4, CPUs))
    copies: int | None = None        # detectors side by side (default: one per core for a TFLite
                                     # model on the CPU, else one; curate.detector_copies)
    checkpoint_every: int = 256      # rewrite the manifest after this many images
    second_look: float = 0.25        # no motorbike found: pad each side by this share of the longer
                                     # side and detect again (a bike filling the frame is found
                                     # zoomed out; docs/agreement.md); 0 turns it off
    second_look_box: float = SECOND_LOOK_BOX  # the second look also where the largest motorbike box
                                     # covers less than this share of the photo (a wheel of a bike
                                     # filling the frame; 0: only where none is found)
    far_look: float = 1.0            # still none, in a thumbnail: once more with this share per side
                                     # (1.0: the photo a third of the frame) at --conf; 0 turns it off
    far_look_side: int = FAR_LOOK_SIDE  # the far look is for images whose longer side is at most this
                                     # (px; 0: any size): docs/agreement.md

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
        if self.copies is not None and not 1 <= self.copies <= 64:
            raise UserError(f"--copies {self.copies}: expected 1..64")
        if not 0.0 <= self.second_look <= 2.0:
            raise UserError(f"--second-look {self.second_look}: expected 0..2 (0 turns it off)")
        if not 0.0 <= self.second_look_box < 1.0:
            raise UserError(f"--second-look-box {self.second_look_box}: expected 0..1 (0 turns it off)")
        if not 0.0 <= self.far_look <= 4.0:
            raise UserError(f"--far-look {self.far_look}: expected 0..4 (0 turns it off)")
        if self.far_look_side < 0:
            raise UserError(f"--far-look-side {self.far_look_side}: expected >= 0 (0: any size)")
        if self.checkpoint_every < 1:
            raise UserError(f"checkpoint_every {self.checkpoint_every}: expected >= 1")

    @property
    def decode_workers(self) -> int:
        return self.workers or min(4, os.cpu_count() or 1)

    def stream_kwargs(self) -> dict:
        """The options of `detect_batches` / `stream_detections` (besides the detector and the jobs)."""
        return {"imgsz": self.imgsz, "conf": self.conf, "batch": self.batch, "workers": self.decode_workers,
                "looks": Looks(self.second_look, self.second_look_box, self.far_look, self.far_look_side)}

    def result_params(self) -> dict:
        """The options that change what is recorded (part of the resume key)."""
        out = {"imgsz": self.imgsz, "conf": self.conf, "margin": self.margin,
               "per_image": self.per_image, "min_size": self.min_size}
        if self.second_look:
            out["second_look"] = self.second_look
            out["second_look_conf"] = min(self.conf, SECOND_LOOK_CONF)
            if self.second_look_box:
                out["second_look_box"] = self.second_look_box
        if self.far_look:
            out["far_look"] = self.far_look
            out["far_look_side"] = self.far_look_side
        return out


def detect_key(weights_sha256: str, opts: DetectOptions, imgsz=None) -> str:
    """The run's resume key; `imgsz` is the size the model really takes when that is not
    `opts.imgsz` (a fixed-size export: its input size, or "fixed" when it cannot be read)."""
    from .crop import EDGE_PX, PNG_COMPRESS

    params = {**opts.result_params(), **({"imgsz": imgsz} if imgsz is not None else {})}
    blob = json.dumps({"weights": weights_sha256, **params, "edge_px": EDGE_PX,
                       "png": PNG_COMPRESS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _already_done(r: dict, job: Job, key: str, folder: Path) -> bool:
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
        job = Job(pos=pos, sample_id=str(r["sample_id"]), path=decoded_path(folder, root, r),
                   sha256=str(r["sha256"]) if present(r.get("sha256")) else f"id:{r['sample_id']}",
                   decoded_from=str(r["repaired_path"]) if repaired else "")
        if r["status"] != "ok" and not repaired:
            undecodable.append((job, f"scan status {r['status']}, no repaired copy"))
        elif not _already_done(r, job, key, folder):
            todo.append(job)
    return todo, undecodable


def _on_ray(todo: list, rows, opts: DetectOptions, key: str, manifest_path: Path, workers: int, progress: bool):
    """The chunks of journal records of `todo`, detected by a pool of Ray actors holding the model
    (one per GPU where the cluster has GPUs); see `curate.detect_worker`."""
    from functools import partial

    from .detect_worker import DetectSpec, detect_chunk

    spec = DetectSpec(weights=str(opts.weights), device=opts.device, opts=opts, key=key,
                      manifest_path=str(manifest_path))
    items = [(job, str(rows.iloc[job.pos]["path"])) for job in todo]
    return engine.map_chunks(partial(detect_chunk, spec=spec), items, workers=workers, chunk_size=opts.batch,
                             progress=progress, desc="detect", unit="img", actors=True)


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
    params = {**{k: v for k, v in asdict(opts).items() if k not in ("workers", "checkpoint_every", "copies")},
              "imgsz": opts.imgsz if imgsz is None else imgsz, "device": det.device,
              "detector": det.name, "weights_sha256": det.weights_sha256,
              "ultralytics_version": det.ultralytics_version, "detect_key": key,
              "primary": "largest area x confidence among 'motorcycle' detections",
              **engine.current().describe()}
    folder = m.folder
    todo, undecodable = _select(m, key, folder)
    run = DetectResults(m, manifest_path, det, opts, key)
    for job, why in undecodable:
        run.record_failure(job, "not_decodable", why)
    journal = Journal(manifest_path, STAGE, key)
    n_todo = len(todo)
    todo = run.restore(journal.load(), todo, folder)
    n_skipped = int((m.df["crop_index"] == 0).sum()) - n_todo - len(undecodable)
    if n_skipped or n_todo > len(todo):
        log.info("resuming: %d file(s) already detected with the same weights and options, %d from "
                 "the interrupted run's journal", n_skipped, n_todo - len(todo))
    rows = m.df
    workers = opts.decode_workers
    on_ray = engine.current().name == "ray"
    bar = tqdm(total=len(todo), desc="detect", unit="img", disable=not progress or on_ray)  # ray: its own bar

    def keep_detected(done: list) -> None:
        for d in done:
            if d.status is None:
                run.record(d.job, d.bgr, d.dets, rows.iloc[d.job.pos], d.look)
            else:
                run.record_failure(d.job, d.status, d.error)
        journal.append([run.journal_record(d.job.sample_id) for d in done])
        bar.update(len(done))

    def keep_records(recs: list) -> None:     # made by Ray workers: taken in as they are
        for rec in recs:
            run.take(rec)
        journal.append(recs)

    if on_ray:
        chunks, keep = _on_ray(todo, rows, opts, key, manifest_path, workers, progress), keep_records
    else:
        copies = detector_copies(det, opts.copies) if todo else [det]
        chunks = detect_batches(det, todo, copies=copies, **opts.stream_kwargs())
        keep = keep_detected
    try:
        # the manifest is rewritten every checkpoint_every images, on an interrupt and at the end
        run_chunks(chunks, keep, every=opts.checkpoint_every, publish=lambda complete: run.write(params))
    finally:
        bar.close()
    journal.remove()
    out = read_manifest(manifest_path)
    counts = out.df["detect_status"].value_counts()
    log.info("detect: %s", ", ".join(f"{k} {int(v)}" for k, v in sorted(counts.items())))
    return out
