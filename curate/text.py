"""`curate text`: how much of each photo is text (headlines, banners, captions, price tags), measured
by a real text detector, stored as `text_share` for the `text` check.

Scraped photos of bikes are often magazine thumbnails and adverts: a headline across the picture,
a banner, a price. A person curating a training set rejects them (a generator learns the letters);
the background measures of `curate score` cannot tell a headline from a street. The detector is
RapidOCR's PP-OCR text detector (its ONNX model ships inside the `rapidocr` wheel and runs with
onnxruntime; recognition is not run). `text_share` is the share of the photo's pixels under the
detected text lines; a region whose thinner side is more than `LINE_MAX` of the photo's shorter
side is no line of text (the detector outlines a whole frame-filling bike on white now and then)
and is left out (by the same rule, so is one word in letters taller than that).

The photo measured is the decoded image (the repaired copy, else the original), not the crop:
banners sit where the crop's margin ends. It runs like every row stage (`curate.row_stage`): one
detector per worker process, one thread each, journaled, resumed, reused on a rerun with the same
key; without `rapidocr` installed the stage says so and writes nothing (the check is then null).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import UserError
from manifests import Manifest, merge_columns, read_manifest, write_manifest
from manifests.paths import present

from . import engine
from .row_jobs import JobImageError, load_job_decoded, relative_source, row_job, stale_jobs
from .row_stage import Journal, run_rows
from .work_lock import locks_manifest

log = logging.getLogger(__name__)

STAGE = "text"
VERSION = "v2"     # v2: large JPEGs decoded at a DCT scale
DETECT_SIDE = 480   # longer side the detector sees at most (smaller photos at their own size)
LINE_MAX = 0.15     # a text line's thinner side is at most this share of the photo's shorter side

_DETECTOR = None


@dataclass(frozen=True)
class TextOptions:
    workers: int | None = None
    force: bool = False


def available() -> bool:
    """Whether the text detector can run here (`rapidocr` and `onnxruntime` installed)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("rapidocr", "onnxruntime"))


def _model_version() -> str:
    from importlib.metadata import version

    return f"rapidocr-{version('rapidocr')}"


def _key() -> str:
    return hashlib.sha256(f"{VERSION}:{_model_version()}:{DETECT_SIDE}:{LINE_MAX}".encode()).hexdigest()[:12]


def detector():
    """This process's text detector (made once): detection only, one thread, no download."""
    global _DETECTOR
    if _DETECTOR is None:
        from rapidocr import RapidOCR

        _DETECTOR = RapidOCR(params={
            "Global.use_cls": False, "Global.use_rec": False, "Global.log_level": "error",
            "Det.limit_type": "max", "Det.limit_side_len": DETECT_SIDE,
            "EngineConfig.onnxruntime.intra_op_num_threads": 1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1})
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    return _DETECTOR


def text_lines(rgb: np.ndarray) -> list[np.ndarray]:
    """The text lines the detector finds in an RGB image: one (4, 2) float polygon each, in pixels."""
    out = detector()(np.ascontiguousarray(rgb[..., ::-1]), use_det=True, use_cls=False, use_rec=False)
    boxes = getattr(out, "boxes", None)
    return [] if boxes is None else [np.asarray(b, dtype=np.float32).reshape(-1, 2) for b in boxes]


def line_share(lines: list[np.ndarray], width: int, height: int) -> float:
    """Share of a `width` x `height` image under the text lines (overlaps counted once), leaving out
    regions too thick to be a line of text."""
    import cv2

    mask = np.zeros((height, width), np.uint8)
    for poly in lines:
        (_, _), (w, h), _ = cv2.minAreaRect(poly)
        if min(w, h) <= LINE_MAX * min(width, height):
            cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return float(mask.mean()) if mask.size else 0.0


def text_chunk(jobs: list[dict]) -> list[dict]:
    """`text_share` of a chunk of row jobs (the unit of work sent to a worker)."""
    out = []
    for j in jobs:
        rec = {"sample_id": j["sample_id"], "text_source": j["decoded"], "text_share": None, "text_error": None}
        try:
            # a large JPEG at a DCT scale still >= DETECT_SIDE (`curate.decoded`): the detector sees
            # no more than that, and a share of the photo does not depend on its scale
            rgb = np.asarray(load_job_decoded(j, "decoded", DETECT_SIDE).image)
            rec["text_share"] = line_share(text_lines(rgb), rgb.shape[1], rgb.shape[0])
        except JobImageError as exc:
            rec["text_error"] = str(exc)
        out.append(rec)
    return out


def _reused(df, done: dict[str, dict]) -> None:
    for r in df.to_dict("records"):
        sid = str(r["sample_id"])
        if sid not in done and present(r.get("text_source")):
            share = r.get("text_share")
            done[sid] = {"sample_id": sid, "text_source": r["text_source"],
                         "text_share": float(share) if present(share) else None,
                         "text_error": r.get("text_error") if present(r.get("text_error")) else None}


@locks_manifest()
def text_manifest(manifest_path, opts: TextOptions = TextOptions(), *, progress: bool = True) -> Manifest | None:
    """Measure every row's text share (resuming); rewrite the manifest in place. Without the text
    detector installed: a warning, the manifest untouched, None."""
    import pandas as pd

    from common.pool import resolve_workers

    if not available():
        log.warning("text: skipped (the text detector is not installed: pip install 'motocurate[curate]')")
        return None
    manifest_path = Path(manifest_path)
    m = read_manifest(manifest_path)
    if m.root is None:
        raise UserError(f"{manifest_path}: manifest has no root folder (was it written by curate scan?)")
    df, folder = m.df, m.folder
    key = _key()
    # the photo, not the crop: `sample` is what `stale_jobs` compares a reused row's `text_source` with
    jobs = [{**job, "sample": job["decoded"]} for job in (row_job(folder, m.root, r) for r in df.to_dict("records"))]
    journal = Journal(manifest_path, STAGE, key)
    done = journal.begin(opts.force)
    prev = m.stage_params(STAGE) or {}
    if not opts.force and prev.get("key") == key and "text_source" in df.columns:
        _reused(df, done)
    todo = stale_jobs(jobs, done, folder, "text_source")
    log.info("text: %d row(s) to measure, %d reused", len(todo), len(jobs) - len(todo))
    workers = resolve_workers(opts.workers)
    run_rows(text_chunk, todo, done, journal, workers=workers, progress=progress, desc="text", unit="img",
             prepare=lambda r: {**r, "text_source": relative_source(folder, r["text_source"])})
    recs = [done.get(j["sample_id"], {}) for j in jobs]
    new = pd.DataFrame({
        "sample_id": df["sample_id"].astype("string").to_numpy(),
        "text_share": pd.array([r.get("text_share") for r in recs], dtype="Float32"),
        "text_source": pd.array([r.get("text_source") for r in recs], dtype="string"),
        "text_error": pd.array([r.get("text_error") for r in recs], dtype="string"),
    })
    m.df = merge_columns(df, new)
    params = {"detector": _model_version(), "detect_side": DETECT_SIDE, "line_max": LINE_MAX, "key": key,
              "workers": workers, **engine.current().describe(),
              "measured": int(sum(r.get("text_share") is not None for r in recs))}
    write_manifest(m, manifest_path, stage=STAGE, params=params, input_path=manifest_path)
    journal.remove()
    return m
