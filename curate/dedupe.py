"""`curate dedupe`: exact and near duplicates, grouped, with the best copy of each group kept.

Per row (`hash_row`, in worker processes):
- `pixel_hash`: the exact-duplicate signature of the *decoded file* (see
  `curate.hashing.pixel_signature`; robust to metadata and to re-saving);
- `phash` / `phash_mirror`: 64-bit perceptual hash (pHash by default) of the
  sample's crop and of its mirror image, used to search;
- `phash_fine` / `phash_fine_mirror`: the same hash at 256 bits, used to verify
  each candidate pair (Caltech's side views on white are so alike that 64 bits
  alone confuse distinct bikes; calibration in docs/calibration.md);
- `phash_full*`: the same four hashes of the whole decoded photo: the detector's box
  moves between a photo and its resized or mirrored copy, so crops alone miss copies;
- the quality figures the keeper choice needs (crop size, sharpness, busyness).

Then (`group_rows`): exact pairs are rows whose signatures match (same decoded
size, same crop index, thumbnails within `exact_tol`); near pairs are rows whose
crop hashes, or (for each file's primary sample, crop index 0) whole-photo
hashes, are within `threshold` at 64 bits and `fine_threshold` at 256 bits,
either copy mirrored; a whole-photo pair also needs the two bikes' boxes at the
same place in the photo (`SAME_SUBJECT_IOU`). Pairs are joined by union-find into `dup_group`;
in each group the keeper is the best copy: bike not cut off, then the larger
crop, then sharper, then less busy, but first a copy that no other rule of `curate filter`
rejects (so a group never loses every copy); the reason is recorded in `dup_reason`.
Nothing is deleted. Rows that cannot be decoded get null hashes and are never
grouped.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from manifests import Manifest, UserError, read_manifest, write_manifest
from manifests.paths import cell, present

from .grouping import exact_pairs, near_pairs
from .hashing import HASH_VERSION, HASHERS, hash_decode_side
from .row_jobs import JobImageError, _list, load_job_decoded, relative_source, row_job, stale_jobs
from .row_stage import Journal, run_rows
from . import engine
from .work_lock import locks_manifest

log = logging.getLogger(__name__)

STAGE = "dedupe"
FINE_BITS = 256


@dataclass(frozen=True)
class DedupeOptions:
    method: str = "phash"          # one of curate.hashing.HASHERS
    threshold: int = 8             # Hamming distance at 64 bits (search); calibrated
    fine_threshold: int = 24       # Hamming distance at 256 bits (verification, -1 = off); calibrated
    mirror: bool = True            # also match a left-right flipped copy
    exact_tol: int = 2             # max thumbnail difference (0..255) for an exact duplicate
    workers: int | None = None
    force: bool = False            # re-hash every row (else rows already hashed are reused)

    def validate(self) -> None:
        if self.method not in HASHERS:
            raise UserError(f"--method must be one of {', '.join(HASHERS)} (got {self.method!r})")
        if not 0 <= self.threshold <= 32:
            raise UserError(f"--threshold must be in 0..32 (got {self.threshold})")
        if not -1 <= self.fine_threshold <= 128:
            raise UserError(f"--fine-threshold must be in -1..128 (got {self.fine_threshold})")
        if not 0 <= self.exact_tol <= 32:
            raise UserError(f"--exact-tol must be in 0..32 (got {self.exact_tol})")


# ------------------------------------------------------------------ per-row hashing

def hash_row(job: dict, method: str) -> dict:
    """Hashes and quality figures of one row; null hashes and a reason when it cannot be decoded."""
    side = hash_decode_side(method)
    try:
        img = load_job_decoded(job, "sample", side)
        full = img if job["decoded"] == job["sample"] else load_job_decoded(job, "decoded", side)
    except JobImageError as exc:
        return {"sample_id": job["sample_id"], "hash_source": job["sample"], "hash_error": str(exc)}
    return hash_pixels(job, img, full, method)


def hash_pixels(job: dict, img, full, method: str) -> dict:
    """`hash_row` of a row whose crop `img` and whole decoded photo `full` (the same object when the
    row has no crop; PIL images or `curate.decoded.Decoded`, decoded at
    `curate.hashing.hash_decode_side`) are decoded already: `curate score` calls it on the pixels
    it measured."""
    from . import checks, hashing
    from .decoded import Decoded

    same = full is img
    img, full = Decoded.of(img), Decoded.of(full)
    out = {"sample_id": job["sample_id"], "hash_source": job["sample"]}
    scaled = hashing.at_hash_scale(full)       # once: a large PNG is reduced here
    grey_full = scaled.convert("L")            # one grey conversion of the whole photo for both
    out["pixel_hash"] = hashing.pixel_signature(scaled, grey_full)

    def four(im, grey=None) -> dict:
        if method == "phash":
            im = scaled if im is full else hashing.at_hash_scale(im)
        h, m, f, fm = hashing.hash_set(im, method, grey)
        return {"": hashing.to_hex(h), "_mirror": hashing.to_hex(m), "_fine": f, "_fine_mirror": fm}

    crop = four(full, grey_full) if same else four(img)
    # the whole photo only for each file's primary sample (grouping uses no other): no crop -> the same
    whole = crop if same else four(full, grey_full) if job.get("crop_index", 0) == 0 else dict.fromkeys(crop)
    out.update({f"phash{k}": v for k, v in crop.items()})
    out.update({f"phash_full{k}": v for k, v in whole.items()})
    out["q_area"] = img.size[0] * img.size[1]
    out["q_size"] = f"{img.size[0]}x{img.size[1]}"
    if job.get("measure", True):
        raw = checks.measure_sample(img, job["box"], box_orig_side=job["box_side"])
        out["q_sharp"], out["q_busy"] = raw["blur"], raw["busy"]
    return out


def handoff(manifest_path) -> Journal:
    """Hashes that `curate score` made from its own decode of each sample (`hash_pixels`, with the
    method in `hash_method`) for the next `curate dedupe` of the manifest, which takes them as done
    (when made from the same source file) and removes the file once the manifest holds them."""
    return Journal(manifest_path, STAGE, "score", kind="handoff")


def hash_chunk(jobs: list[dict], method: str) -> list[dict]:
    return [hash_row(j, method) for j in jobs]


def _key(opts: DedupeOptions) -> str:
    import hashlib

    return hashlib.sha256(f"v{HASH_VERSION}:{opts.method}".encode()).hexdigest()[:12]


def hash_tag(method: str) -> str:
    """What the hashes of `method` made by this version are tagged with (`HASH_VERSION`)."""
    return f"{method}/v{HASH_VERSION}"


# ------------------------------------------------------------------ grouping

def _quality(row: dict) -> tuple:
    """Higher is better: no other reject rule fires, bike not cut off (the `cut_off` check's flag),
    larger crop, sharper, less busy."""
    cut = row.get("cut_off")
    not_cut = 0 if present(cut) and bool(cut) else 1
    busy = row.get("busy")
    return (0 if row.get("rejected_as") else 1, not_cut, row.get("area") or 0, row.get("sharp") or 0.0,
            -(busy if busy is not None else 0.0))


def _why(best: dict, second: dict) -> str:
    if _quality(best)[0] != _quality(second)[0]:
        return f"passes the other checks (the other copy is rejected as {second['rejected_as']})"
    if _quality(best)[1] != _quality(second)[1]:
        return "bike not cut off"
    if (best.get("area") or 0) != (second.get("area") or 0):
        return f"larger crop ({best['size']} vs {second['size']})"
    if (best.get("sharp") or 0) != (second.get("sharp") or 0):
        return f"sharper (Laplacian variance {best['sharp']:.0f} vs {second['sharp']:.0f})"
    if (best.get("busy") or 0) != (second.get("busy") or 0):
        return f"less busy background ({best['busy']:.3f} vs {second['busy']:.3f})"
    return "identical quality: first by path"


# Whole-photo matches count only where the two samples' bikes sit at the same place in the photo
# (boxes in units of the photo, IoU): frames of one fixed street camera look alike as photos while
# their samples are different bikes.
SAME_SUBJECT_IOU = 0.5


def _unit_box(signature: str | None, box: list | None) -> tuple[float, float, float, float] | None:
    """The primary box in units of the decoded photo (whose size the pixel signature records); the
    whole photo when the row has no box."""
    if signature is None:
        return None
    from .hashing import parse_signature

    w, h, _ = parse_signature(signature)
    if not box:
        return (0.0, 0.0, 1.0, 1.0)
    return (box[0] / w, box[1] / h, box[2] / w, box[3] / h)


def _mirror_box(b):
    return None if b is None else (1.0 - b[2], b[1], 1.0 - b[0], b[3])


def _iou(a, b) -> float:
    if a is None or b is None:
        return 0.0
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def rejected_otherwise(df) -> list[str | None]:
    """Per row, the reason `curate filter`'s automatic rules would reject it for if duplicates were
    allowed, else None: a group's keeper should be a copy that stays. (A reviewer's reject is about
    the picture, which its copies share: it does not make another copy the keeper; see
    `curate.filter._duplicates_now`.)"""
    from .filter import FilterOptions, decide

    return decide(df, FilterOptions(disabled=("duplicate",), use_review=False)).reason


def group_rows(rows: list[dict], opts: DedupeOptions) -> dict[str, list]:
    """From per-row hashes and quality (`rows`, one per manifest row, in order) to the dup columns.

    Row keys: sample_id, path, crop_index, pixel_hash, phash, phash_mirror, phash_fine,
    phash_fine_mirror, phash_full*, area, size, sharp, busy, cut_off, rejected_as (see
    `rejected_otherwise`), primary_box (optional); a missing key is a null.
    """
    from .grouping import connected_groups
    from .hashing import signatures_match

    n = len(rows)
    nn = lambda col: [v if present(v) else None for v in (r.get(col) for r in rows)]  # noqa: E731
    sig, h, hm, fine, fine_m = (nn(c) for c in ("pixel_hash", "phash", "phash_mirror",
                                                  "phash_fine", "phash_fine_mirror"))
    crop_index = [int(v) if present(v) else 0 for v in (r.get("crop_index") for r in rows)]
    # whole-photo hashes: one per file (its primary sample), or every crop of it would match
    hf, hfm, ff, ffm = ([v if crop_index[i] == 0 else None for i, v in enumerate(nn(c))]
                        for c in ("phash_full", "phash_full_mirror", "phash_full_fine", "phash_full_fine_mirror"))
    ex = exact_pairs(sig, crop_index, opts.exact_tol)
    near = near_pairs(h, hm, fine, fine_m, opts)
    boxes = [_unit_box(sig[i], _list(r.get("primary_box"))) for i, r in enumerate(rows)]
    near_full = [(i, j, d, mir) for i, j, d, mir in near_pairs(hf, hfm, ff, ffm, opts)
                 if _iou(boxes[i], _mirror_box(boxes[j]) if mir else boxes[j]) >= SAME_SUBJECT_IOU]
    log.info("dedupe: %d exact pair(s), %d near pair(s) of crops, %d of whole photos", len(ex), len(near),
             len(near_full))
    pairs = np.asarray([(i, j) for i, j in ex] + [(i, j) for i, j, _, _ in (*near, *near_full)],
                       dtype=np.int64).reshape(-1, 2)
    linked: dict[tuple[int, int], tuple[int, str, bool]] = {}    # near pair -> (distance, what, mirrored)
    for what, found in (("whole photo", near_full), ("crop", near)):
        for i, j, d, mir in found:
            if (i, j) not in linked or d <= linked[(i, j)][0]:
                linked[(i, j)] = (d, what, mir)
    labels = connected_groups(n, pairs)
    sizes = np.bincount(labels, minlength=n)
    order_key = [(str(r["path"]), crop_index[i]) for i, r in enumerate(rows)]

    dup_group = [None] * n
    is_dup = [None if sig[i] is None and h[i] is None else False for i in range(n)]
    keeper = [None] * n
    rank = [None] * n
    reason = [None] * n
    for i in range(n):
        if is_dup[i] is None:
            reason[i] = "not hashed: " + str(rows[i].get("hash_error") or "no pixels")
    roots = np.flatnonzero(sizes > 1)
    members_of: dict[int, list[int]] = {}
    for i in np.flatnonzero(sizes[labels] > 1).tolist():
        members_of.setdefault(int(labels[i]), []).append(i)
    for gid, root in enumerate(sorted(roots.tolist())):
        members = sorted(members_of[int(root)], key=lambda i: order_key[i])
        ranked = sorted(members, key=lambda i: _quality(rows[i]), reverse=True)  # stable: path order
        best = ranked[0]
        for r, i in enumerate(ranked):
            dup_group[i], rank[i] = gid, r
        keeper[best] = True
        is_dup[best] = False
        reason[best] = f"kept: {_why(rows[best], rows[ranked[1]])}"
        for i in ranked[1:]:
            keeper[i] = False
            is_dup[i] = True
            if sig[i] and sig[best] and crop_index[i] == crop_index[best] and \
                    signatures_match(sig[i], sig[best], opts.exact_tol):
                kind = (f"same picture (decoded pixels within {opts.exact_tol} levels"
                        f"{', same bytes' if rows[i].get('sha256') and rows[i].get('sha256') == rows[best].get('sha256') else ''})")
            elif (min(i, best), max(i, best)) in linked:
                d, what, mir = linked[(min(i, best), max(i, best))]
                kind = f"near duplicate ({what}, {opts.method} distance {d}{', mirrored' if mir else ''})"
            else:
                kind = "near duplicate (through another copy in its group)"
            reason[i] = f"{kind} of {rows[best]['sample_id']} ({rows[best]['path']})"
    return {"sample_id": [str(r["sample_id"]) for r in rows], "dup_group": dup_group, "is_duplicate": is_dup,
            "dup_keeper": keeper, "dup_rank": rank, "dup_reason": reason}


# ------------------------------------------------------------------ the stage

HASH_COLUMNS = ("pixel_hash", "phash", "phash_mirror", "phash_fine", "phash_fine_mirror",
                "phash_full", "phash_full_mirror", "phash_full_fine", "phash_full_fine_mirror", "hash_error")


@locks_manifest()
def dedupe_manifest(manifest_path, opts: DedupeOptions = DedupeOptions(), *,
                    progress: bool = True) -> Manifest:
    """Hash every row (resuming), group duplicates, choose keepers; rewrite the manifest in place."""
    from common.pool import resolve_workers

    opts.validate()
    manifest_path = Path(manifest_path)
    m = read_manifest(manifest_path)
    if m.root is None:
        raise UserError(f"{manifest_path}: manifest has no root folder (was it written by curate scan?)")
    rows, cols = m.records(), set(m.columns)
    folder = m.folder
    jobs = []
    for r in rows:
        job = row_job(folder, m.root, r)
        # keeper quality comes from `curate score` when it has run: no second measurement
        job["measure"] = not (present(r.get("blur_raw")) and present(r.get("busy_raw")))
        jobs.append(job)
    plog, handed = Journal(manifest_path, STAGE, _key(opts)), handoff(manifest_path)
    done = {} if opts.force else {**{sid: r for sid, r in handed.load().items()
                                     if r.get("hash_method") == hash_tag(opts.method)}, **plog.load()}
    if opts.force:
        plog.remove()
        handed.remove()
    # rows hashed by an earlier complete run with the same method (and version) and source are reused
    prev = m.stage_params(STAGE) or {}
    if not opts.force and prev.get("hash_tag") == hash_tag(opts.method) and {"hash_source", "phash_full"} <= cols:
        for r in rows:
            sid = str(r["sample_id"])
            if sid not in done and present(r.get("hash_source")) and present(r.get("q_area")):
                done[sid] = {c: (r.get(c) if present(r.get(c)) else None)
                             for c in (*HASH_COLUMNS, "hash_source")}
                done[sid].update(sample_id=sid, q_area=r.get("q_area"), q_size=r.get("q_size"),
                                 q_sharp=r.get("q_sharp"), q_busy=r.get("q_busy"))
    todo = stale_jobs(jobs, done, folder, "hash_source")
    log.info("dedupe: %d row(s) to hash, %d reused", len(todo), len(jobs) - len(todo))
    workers = resolve_workers(opts.workers)
    run_rows(partial(hash_chunk, method=opts.method), todo, done, plog, workers=workers, progress=progress,
             desc="dedupe: hashing", unit="img", prepare=lambda r: {**r, "hash_source": relative_source(folder, r["hash_source"])})
    res_cols = [*HASH_COLUMNS, "hash_source", "q_area", "q_size", "q_sharp", "q_busy"]
    res = [{c: cell(done.get(j["sample_id"], {}).get(c)) for c in res_cols} for j in jobs]
    rejected = rejected_otherwise(m.table)
    # keeper quality: score columns when present (more faithful), else what hashing measured
    q = [{"sample_id": str(r["sample_id"]), "path": str(r["path"]), "crop_index": r.get("crop_index"),
          **{c: h[c] for c in HASH_COLUMNS}, "area": h["q_area"], "size": h["q_size"],
          "sharp": _prefer(r.get("blur_raw"), h["q_sharp"]), "busy": _prefer(r.get("busy_raw"), h["q_busy"]),
          "cut_off": r.get("cut_off_flag"), "rejected_as": why, "sha256": r.get("sha256"),
          "primary_box": r.get("primary_box")}
         for r, h, why in zip(rows, res, rejected)]
    groups = group_rows(q, opts)
    m.with_columns({"sample_id": groups["sample_id"], **{c: [h[c] for h in res] for c in res_cols},
                    **{c: groups[c] for c in ("dup_group", "is_duplicate", "dup_keeper", "dup_rank", "dup_reason")}})
    params = {**asdict(opts), "workers": workers, **engine.current().describe(), "hash_bits": 64, "fine_bits": FINE_BITS,
              "hash_tag": hash_tag(opts.method),
              "signature": "16x16 area-averaged luma + size",
              "groups": len({g for g in groups["dup_group"] if g is not None}),
              "duplicates": sum(v is True for v in groups["is_duplicate"])}
    write_manifest(m, manifest_path, stage=STAGE, params=params, input_path=manifest_path)
    plog.remove()
    handed.remove()
    return m


def _prefer(have, fallback):
    """Score's value where it has one, else what hashing measured."""
    return have if present(have) else cell(fallback)
