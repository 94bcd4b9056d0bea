"""`curate score`: quality checks on each sample's final crop (see `curate.checks`).

Writes, per check NAME in `curate.checks.CHECKS`: `NAME_raw`, `NAME_score` in
[0, 1] and `NAME_flag`, plus `subject_frac`; the thresholds, score mappings and
measuring size go into the write's params. `reflag` applies new thresholds to
the stored scores without reading any image.
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from manifests import Manifest, UserError, read_manifest, write_manifest
from manifests.paths import present

from . import checks
from .dedupe import DedupeOptions, handoff, hash_pixels, hash_tag
from .hashing import HASH_DECODE_SIDE, hash_decode_side
from .row_jobs import JobImageError, load_job_decoded, relative_source, row_job, stale_jobs
from .row_stage import Journal, run_rows
from . import engine
from .work_lock import locks_manifest

log = logging.getLogger(__name__)

STAGE = "score"
DEDUPE_METHOD = DedupeOptions().method     # what a plain `curate dedupe` (and `curate run`) hashes with


@dataclass(frozen=True)
class ScoreOptions:
    thresholds: tuple[tuple[str, float], ...] = ()   # overrides of the calibrated defaults
    size: int = checks.MEASURE_SIDE                  # longer side the crop is measured at
    workers: int | None = None
    force: bool = False                              # re-measure every row
    default_thresholds: bool = False                 # forget the thresholds set on earlier runs
    hashes: bool = True                              # also hash each sample for `curate dedupe`
                                                     # from the same decode (`curate.dedupe.handoff`)

    def user_thresholds(self, prev: dict | None) -> dict[str, float]:
        """Thresholds the user set: on earlier runs of this manifest (remembered, so that a later
        `curate run` does not silently undo a `--rethreshold`), then these options."""
        earlier = {} if self.default_thresholds else (prev or {}).get("set_thresholds", {})
        return {**validate_thresholds(earlier), **validate_thresholds(dict(self.thresholds))}


def resolve_thresholds(user: dict[str, float]) -> dict[str, float]:
    """The calibrated default of every check, overridden by the user's."""
    return {**{n: c.threshold for n, c in checks.CHECKS.items()}, **user}


def validate_thresholds(th: dict[str, float]) -> dict[str, float]:
    out = {}
    for name, v in th.items():
        if name not in checks.CHECKS:
            raise UserError(f"--threshold: unknown check {name!r}; choose from {', '.join(checks.CHECKS)}")
        v = float(v)
        if not 0.0 <= v <= 1.0 or math.isnan(v):
            raise UserError(f"--threshold {name}: must be a score in [0, 1] (got {v})")
        out[name] = v
    return out


def decode_side(size: int) -> int:
    """The longer side score decodes a large JPEG down to (`curate.decoded.load`): no less than it
    measures at, nor than dedupe's hashes need (`curate.hashing.HASH_DECODE_SIDE`)."""
    return max(size, HASH_DECODE_SIDE)


def _decode_tag(size: int) -> str:
    """How the stored raw values were decoded (the write's params): values decoded otherwise are
    measured again."""
    return f"jpeg-dct-scale>={decode_side(size)}"


def score_row(job: dict, size: int) -> dict:
    out = {"sample_id": job["sample_id"], "score_source": job["sample"]}
    side = decode_side(size)
    try:
        img = load_job_decoded(job, "sample", side)
    except JobImageError as exc:
        out["score_error"] = str(exc)
        return out
    touch = job.get("touch")
    raw = checks.measure_sample(img, job["box"], box_orig_side=job["box_side"],
                                touch=None if touch is None else tuple(touch), side=size)
    out.update({f"{k}_raw": v for k, v in raw.items() if k in checks.CHECKS})
    out["subject_frac"] = raw["subject_frac"]
    # the hashes come from this decode only where it is the one dedupe would make itself
    method = job.get("hash_method")
    if method and hash_decode_side(method) == side:
        out["handoff"] = _hashes_for_dedupe(job, img, raw, side)
    return out


def _hashes_for_dedupe(job: dict, img, raw: dict, side: int) -> dict | None:
    """What `curate dedupe` would hash of this row, from the crop already decoded here (and the
    whole photo, decoded once more only for a crop row); None when the photo does not decode
    (dedupe then tries itself and records why)."""
    try:
        full = img if job["decoded"] == job["sample"] else load_job_decoded(job, "decoded", side)
    except JobImageError:
        return None
    # dedupe measures keeper quality itself only where score has no value for it
    measure = raw.get("blur") is None or raw.get("busy") is None
    return {**hash_pixels({**job, "measure": measure}, img, full, job["hash_method"]),
            "hash_method": hash_tag(job["hash_method"])}


def score_chunk(jobs: list[dict], size: int) -> list[dict]:
    return [score_row(j, size) for j in jobs]


def _key(opts: ScoreOptions) -> str:
    return hashlib.sha256(f"v3:{opts.size}:{','.join(checks.CHECKS)}".encode()).hexdigest()[:12]


def _columns(recs: list[dict], thresholds: dict[str, float]) -> dict[str, list]:
    """raw -> score -> flag for every check, per row of `recs` (the manifest's order)."""
    out: dict[str, list] = {"sample_id": [r["sample_id"] for r in recs]}
    for name, c in checks.CHECKS.items():
        # rounded to the stored float32 first: scores made now and from a reread manifest agree
        raw = [float(np.float32(v)) if present(v) else None for v in (r.get(f"{name}_raw") for r in recs)]
        sc = [c.score(v) for v in raw]
        out[f"{name}_raw"] = raw
        out[f"{name}_score"] = sc
        out[f"{name}_flag"] = [None if s is None else s >= thresholds[name] for s in sc]
    return out


@locks_manifest()
def score_manifest(manifest_path, opts: ScoreOptions = ScoreOptions(), *,
                   progress: bool = True) -> Manifest:
    """Measure every row's crop (resuming), score and flag; rewrite the manifest in place."""
    from common.pool import resolve_workers

    if not 32 <= opts.size <= 2048:
        raise UserError(f"--size must be in 32..2048 (got {opts.size})")
    opts.user_thresholds(None)  # bad --threshold values fail before any reading
    manifest_path = Path(manifest_path)
    m = read_manifest(manifest_path)
    if m.root is None:
        raise UserError(f"{manifest_path}: manifest has no root folder (was it written by curate scan?)")
    prev = m.stage_params(STAGE) or {}
    user = opts.user_thresholds(prev)
    thresholds = resolve_thresholds(user)
    rows, folder = m.records(), m.folder
    jobs = []
    for r in rows:
        j = row_job(folder, m.root, r)
        j["touch"] = checks.row_touch(r)
        j["row_raw"] = checks.row_raw(r)
        if opts.hashes:
            j["hash_method"] = DEDUPE_METHOD
        jobs.append(j)
    plog = Journal(manifest_path, STAGE, _key(opts))
    done = plog.begin(opts.force)
    same_checks = sorted(prev.get("checks") or {}) == sorted(checks.CHECKS)   # a new check measures all
    if (not opts.force and prev.get("size") == opts.size and "score_source" in m.columns and same_checks
            and prev.get("decode") == _decode_tag(opts.size)):
        for r in rows:
            sid = str(r["sample_id"])
            # rows that failed are measured again (their crop may have been rebuilt since)
            if sid not in done and present(r.get("score_source")) and present(r.get("blur_raw")):
                done[sid] = {k: (r.get(k) if present(r.get(k)) else None) for k in
                             ("score_source", "score_error", "subject_frac",
                              *(f"{n}_raw" for n in checks.CHECKS))}
                done[sid]["sample_id"] = sid
    todo = stale_jobs(jobs, done, folder, "score_source")
    # checks measured from the detections (`from_row`) are taken from the current row on every run
    log.info("score: %d row(s) to measure, %d reused", len(todo), len(jobs) - len(todo))
    workers = resolve_workers(opts.workers)
    handed = handoff(manifest_path)

    def split(chunk: list[dict]) -> None:
        recs = [h for h in (r.pop("handoff", None) for r in chunk) if h]
        if recs:
            handed.append([{**h, "hash_source": relative_source(folder, h["hash_source"])} for h in recs])

    run_rows(partial(score_chunk, size=opts.size), todo, done, plog, workers=workers, progress=progress,
             desc="score", unit="img", split=split,
             prepare=lambda r: {**r, "score_source": relative_source(folder, r["score_source"])})
    recs = []
    for j in jobs:
        r = dict(done.get(j["sample_id"], {}))
        r["sample_id"] = j["sample_id"]
        if r.get("score_error") is None and r.get("blur_raw") is not None:
            r.update({f"{n}_raw": v for n, v in j["row_raw"].items()})
        recs.append(r)
    new = _columns(recs, thresholds)
    new["subject_frac"] = [v if present(v) else None for v in (r.get("subject_frac") for r in recs)]
    for c in ("score_source", "score_error"):
        new[c] = [v if present(v) else None for v in (r.get(c) for r in recs)]
    m.with_columns(new)
    # rows with pixels to measure that could not be (files that are no image are not counted)
    errors = sum(1 for j in jobs if j["usable"] and present(done.get(j["sample_id"], {}).get("score_error")))
    if errors:
        log.warning("%d row(s) could not be measured (see score_error); `curate filter` rejects them "
                    "as not_measured", errors)
    params = {"size": opts.size, "decode": _decode_tag(opts.size), "workers": workers,
              **engine.current().describe(), "force": opts.force,
              "checks": checks.describe(thresholds), "thresholds": thresholds, "set_thresholds": user,
              "flagged": {n: sum(f is True for f in new[f"{n}_flag"]) for n in checks.CHECKS},
              "errors": errors}
    write_manifest(m, manifest_path, stage=STAGE, params=params, input_path=manifest_path)
    plog.remove()
    return m


@locks_manifest()
def reflag(manifest_path, thresholds: dict[str, float]) -> Manifest:
    """Recompute `NAME_flag` from the stored `NAME_score` with new thresholds (no image I/O)."""
    manifest_path = Path(manifest_path)
    new_th = validate_thresholds(thresholds)
    m = read_manifest(manifest_path)
    prev = m.stage_params(STAGE)
    if prev is None:
        raise UserError(f"{manifest_path}: no score results to re-threshold; run `curate score` first")
    th = {**prev.get("thresholds", {}), **new_th}
    flags: dict[str, list] = {"sample_id": m.column("sample_id")}
    for name in new_th:
        col = f"{name}_score"
        if col not in m.columns:
            raise UserError(f"--threshold {name}: manifest has no {col} column")
        # compared as the stored float32, as a fresh `curate score` compares its scores
        flags[f"{name}_flag"] = [None if s is None else float(np.float32(s)) >= th[name] for s in m.column(col)]
    m.with_columns(flags)
    params = {**prev, "thresholds": th, "checks": checks.describe(th), "rethreshold": sorted(new_th),
              "set_thresholds": {**prev.get("set_thresholds", {}), **new_th},
              "flagged": {n: sum(f is True for f in m.column(f"{n}_flag"))
                          for n in checks.CHECKS if f"{n}_flag" in m.columns}}
    write_manifest(m, manifest_path, stage=STAGE, params=params, input_path=manifest_path)
    return m


__all__ = ["ScoreOptions", "reflag", "resolve_thresholds", "score_manifest", "validate_thresholds"]
