"""Square, scale and pack the selected samples of a manifest for the trainer.

`preprocess_manifest` builds the pack; `ensure_pack` builds it only when it is
stale; `load_pack` (numpy + json only) reads it. Which rows are packed: those
with `keep == True` where a `keep` column exists, else those whose scan
`status` is ok (and `detect_status` ok when present). Each row's pixels come
from `manifests.paths.sample_image_path` (crop, else repaired copy, else the
original). The pack is rebuilt when its fingerprint changes: the parameters
that affect pixels (size, mode, fill, max_upscale, resample, reducing_gap,
Pillow version) and, for each selected row in order, its sample_id, sha256,
crop_box, crop_path, crop_sha256, repaired_path, repair_key and the size and
mtime of the file read.

The manifest gets `pack_index` (row in the pack, null when not packed),
`prep_status` (packed | too_small | error | skipped), `prep_reason` and
`prep_scale`; they refer to the pack named in the manifest's latest
`preprocess` params (`pack`).

`manifests` (pyarrow, pandas) is imported inside the functions that read a
manifest, so `from preprocess.pack import load_pack, PrepOptions` works where
only numpy and Pillow are installed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .packfile import (PACK_FORMAT, PackError, PackWriter, export_pngs, is_intact, load_pack,
                       read_sidecar, remove_pngs, sidecar_path, write_json_atomic)
from .pack_columns import STAGE, columns, columns_match, write_columns
from .pack_lock import locked
from .pack_worker import ERROR, PACKED, PREP_STATUSES, SKIPPED, TOO_SMALL, default_workers
from .pack_worker import results
from .square import FILLS, MODES, REDUCING_GAP, RESAMPLE

__all__ = ["PackError", "PackInfo", "PrepOptions", "ensure_pack", "load_pack", "preprocess_manifest",
           "select_rows"]

log = logging.getLogger(__name__)

PACK_DIRNAME = "pack"
SIZE_RANGE = (8, 1024)
# Manifest columns that decide a sample's pixels (absent ones count as null), fingerprinted
# with the size and mtime of the file read.
INPUT_COLUMNS = ("sample_id", "sha256", "crop_box", "crop_path", "crop_sha256", "repaired_path", "repair_key")


@dataclass(frozen=True)
class PrepOptions:
    """How to make the training images; the CLI's defaults.

    size: side of the square output in pixels.
    mode: pad (keep aspect, fill the borders), resize (stretch) or crop (centre square).
    fill: pad colour: black (default, as in the blog), edge, reflect or white.
    max_upscale: largest enlargement allowed (a 64 px crop may become 128 px at 2.0);
        smaller samples are not packed and get prep_status too_small.
    resample: antialiasing filter for scaling: lanczos, box or bicubic.
    png: also write `<pack>-png/<sample_id>.png` (for people and FID tools).
    workers: processes (None: all available cores); does not change the result.
    """

    size: int = 128
    mode: str = "pad"
    fill: str = "black"
    max_upscale: float = 2.0
    resample: str = "lanczos"
    png: bool = False
    workers: int | None = None

    def __post_init__(self):
        problems = []
        if not isinstance(self.size, int) or not SIZE_RANGE[0] <= self.size <= SIZE_RANGE[1]:
            lo, hi = SIZE_RANGE
            problems.append(f"size must be an integer in [{lo}, {hi}], got {self.size!r}")
        if self.mode not in MODES:
            problems.append(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.fill not in FILLS:
            problems.append(f"fill must be one of {', '.join(FILLS)}, got {self.fill!r}")
        if not isinstance(self.max_upscale, (int, float)) or not 1.0 <= self.max_upscale < float("inf"):
            problems.append(f"max_upscale must be a finite number >= 1.0, got {self.max_upscale!r}")
        if self.resample not in RESAMPLE:
            problems.append(f"resample must be one of {', '.join(RESAMPLE)}, got {self.resample!r}")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            problems.append(f"workers must be a positive integer or None, got {self.workers!r}")
        if problems:
            from common.errors import UserError

            raise UserError("; ".join(problems))

    def pack_params(self) -> dict:
        """The parameters the pixels depend on (fill only matters for pad)."""
        from PIL import __version__ as pillow

        return {"size": self.size, "mode": self.mode, "fill": self.fill if self.mode == "pad" else None,
                "max_upscale": float(self.max_upscale), "resample": self.resample,
                "reducing_gap": REDUCING_GAP, "pillow": pillow}

    @property
    def stem(self) -> str:
        """File name of the pack without extension, e.g. `pad-black-128`."""
        return f"pad-{self.fill}-{self.size}" if self.mode == "pad" else f"{self.mode}-{self.size}"


@dataclass(frozen=True)
class PackInfo:
    npy_path: Path          # uint8 (n, size, size, 3)
    ids_path: Path          # JSON beside it: "ids" (sample_id per row) and provenance
    n: int
    size: int
    fingerprint: str = ""
    rebuilt: bool = False   # False when ensure_pack found it up to date
    counts: dict = field(default_factory=dict)  # prep_status -> rows
    png_dir: Path | None = None


# --------------------------------------------------------------------------- selection

def select_rows(df) -> tuple[np.ndarray, list[str | None]]:
    """Which rows are packed, and for the others why not (None for selected rows)."""
    n = len(df)
    if "keep" in df.columns:
        mask = df["keep"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        why = (df["reject_reason"].astype("string").fillna("").tolist() if "reject_reason" in df.columns
               else [""] * n)
        reasons = [None if k else f"keep is not true{f' ({w})' if w else ''}" for k, w in zip(mask, why)]
        return mask, reasons
    status = df["status"].astype("string").fillna("").to_numpy(dtype=object)
    mask = status == "ok"
    reasons: list[str | None] = [None if ok else f"status {s or 'missing'}" for ok, s in zip(mask, status)]
    if "detect_status" in df.columns:
        ds = df["detect_status"].astype("string").fillna("").to_numpy(dtype=object)
        for i in range(n):
            if mask[i] and ds[i] != "ok":
                mask[i] = False
                reasons[i] = f"detect_status {ds[i] or 'missing'}"
    return mask.astype(bool), reasons


# --------------------------------------------------------------------------- plan + fingerprint

@dataclass
class _Plan:
    manifest: object            # manifests.Manifest
    manifest_path: Path
    mask: np.ndarray
    reasons: list
    rows: list[int]             # positions of the selected rows, in manifest order
    paths: list[Path]           # their image files
    params: dict
    fingerprint: str
    npy_path: Path


def _plain(v):
    """A JSON-able, NA-free version of a manifest cell."""
    if v is None:
        return None
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, (str, int, float, bool)):
        return v
    return None if str(v) == "<NA>" else str(v)


def _plan(manifest_path, opts: PrepOptions, out_dir) -> _Plan:
    from manifests import read_manifest
    from common.errors import UserError
    from manifests.paths import sample_image_path

    manifest_path = Path(manifest_path)
    m = read_manifest(manifest_path)
    if not m.root:
        raise UserError(f"{manifest_path}: manifest has no root folder (was it written by `curate scan`?)")
    mask, reasons = select_rows(m.df)
    rows = np.flatnonzero(mask).tolist()
    if not rows:
        how = "keep == true" if "keep" in m.df.columns else "status ok (and detect_status ok)"
        raise UserError(f"{manifest_path}: no rows to pack (none of {len(m.df)} has {how})")
    records = m.df.iloc[rows].to_dict("records")
    paths, inputs = [], []
    for rec in records:
        p = sample_image_path(m.folder, m.root, rec)
        try:
            st = os.stat(p)
            stat = [st.st_size, st.st_mtime_ns]
        except OSError:
            stat = None
        paths.append(p)
        inputs.append([_plain(rec.get(c)) for c in INPUT_COLUMNS] + [stat])
    params = opts.pack_params()
    blob = json.dumps({"format": PACK_FORMAT, "params": params, "inputs": inputs},
                      sort_keys=True, separators=(",", ":"))
    fingerprint = hashlib.sha256(blob.encode()).hexdigest()
    return _Plan(manifest=m, manifest_path=manifest_path, mask=mask, reasons=reasons, rows=rows,
                 paths=paths, params=params, fingerprint=fingerprint,
                 npy_path=_pack_folder(manifest_path, out_dir) / f"{opts.stem}.npy")


# --------------------------------------------------------------------------- build / ensure

def _png_dir(npy_path: Path) -> Path:
    return npy_path.with_name(f"{npy_path.stem}-png")


def _info(plan: _Plan, meta: dict, rebuilt: bool) -> PackInfo:
    png = meta.get("png_files")
    return PackInfo(npy_path=plan.npy_path, ids_path=sidecar_path(plan.npy_path), n=meta["n"],
                    size=meta["size"], fingerprint=plan.fingerprint, rebuilt=rebuilt,
                    counts=dict(meta["counts"]), png_dir=_png_dir(plan.npy_path) if png else None)


def _sync_pngs(plan: _Plan, meta: dict, want: bool, progress: bool) -> dict:
    """Bring the PNG copies in line with the pack; returns the (rewritten) sidecar.

    want: write `<sample_id>.png` for every row unless the sidecar lists them
    all. PNGs of an earlier pack (`png_stale`) that are not in this one are
    removed whether or not PNGs are wanted now.
    """
    have = meta.get("png_files") or []
    stale = meta.get("png_stale") or []
    folder = _png_dir(plan.npy_path)
    if want and (len(have) != meta["n"] or not all((folder / f).exists() for f in have)):
        arr, ids = load_pack(plan.npy_path)
        names = export_pngs(arr, ids, folder, previous=have + stale, progress=progress)
        meta = {**meta, "png_files": names, "png_stale": []}
    elif stale:
        keep = set(have)
        remove_pngs(folder, [f for f in stale if f not in keep])
        log.info("removed the PNGs of the previous pack from %s", folder)
        meta = {**meta, "png_stale": []}
    else:
        return meta
    write_json_atomic(sidecar_path(plan.npy_path), meta)
    return meta


def _build(plan: _Plan, opts: PrepOptions, progress: bool) -> PackInfo:
    from common.errors import UserError

    try:  # PNGs written for the pack being replaced: removed once the new one is in place
        old = read_sidecar(plan.npy_path)
        old_pngs = (old.get("png_files") or []) + (old.get("png_stale") or [])
    except PackError:
        old_pngs = []
    o = opts
    tasks = [(str(p), o.size, o.mode, o.fill, o.resample, float(o.max_upscale)) for p in plan.paths]
    ids = plan.manifest.df["sample_id"].tolist()
    workers = opts.workers or default_workers()
    log.info("packing %d samples (%s) with %d worker(s) into %s", len(tasks), opts.stem, workers,
             plan.npy_path)
    packed, scales, rejected = [], [], {}
    with PackWriter(plan.npy_path, len(tasks), opts.size) as writer, \
            contextlib.closing(results(tasks, workers, progress)) as done:
        for row, (status, why, scale, img) in zip(plan.rows, done):
            if status == PACKED:
                writer.append(img)
                packed.append(ids[row])
                scales.append(scale)
            else:
                rejected[ids[row]] = [status, why, scale]
                log.debug("%s: %s (%s)", ids[row], status, why)
        counts = {s: 0 for s in PREP_STATUSES}
        counts[PACKED] = len(packed)
        counts[SKIPPED] = int((~plan.mask).sum())
        for st, _, _ in rejected.values():
            counts[st] += 1
        meta = {"ids": packed, "scales": scales, "rejected": rejected, "params": plan.params,
                "fingerprint": plan.fingerprint, "counts": counts, "png_files": None,
                "png_stale": old_pngs}
        if not packed:
            meta["n"] = 0
            write_columns(plan, meta, columns(plan, meta))
            example = next(iter(rejected.values()))
            raise UserError(f"{plan.manifest_path}: none of {len(tasks)} selected samples could be packed "
                            f"(too_small {counts[TOO_SMALL]}, error {counts[ERROR]}; e.g. {example[1]})")
        writer.commit(meta)
    meta = read_sidecar(plan.npy_path)
    for st in (TOO_SMALL, ERROR):
        if counts[st]:
            example = next(v[1] for v in rejected.values() if v[0] == st)
            log.warning("%d sample(s) not packed: %s (e.g. %s)", counts[st], st, example)
    write_columns(plan, meta, columns(plan, meta))
    meta = _sync_pngs(plan, meta, opts.png, progress)
    return _info(plan, meta, rebuilt=True)


def _pack_folder(manifest_path, out_dir) -> Path:
    """`out_dir`, or `<manifest folder>/pack/` by default."""
    if out_dir is not None:
        return Path(out_dir).resolve()
    return Path(manifest_path).resolve().parent / PACK_DIRNAME   # tagged as ours when made (see _planned)


def _stat_key(path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # _plan says what is wrong with it
    return st.st_ino, st.st_size, st.st_mtime_ns


@contextlib.contextmanager
def _planned(manifest_path, opts: PrepOptions, out_dir):
    """Check the output folder and read the manifest before anything is written, so that a wrong
    `--manifest` (a photo, say) or `-o` leaves no trace; then hold the pack's lock, re-reading the
    manifest if another process rewrote it meanwhile. Yields the plan."""
    folder = _pack_folder(manifest_path, out_dir)
    from common.outpaths import check_out_dir

    check_out_dir(folder, "-o" if out_dir is not None else "pack folder")
    before = _stat_key(manifest_path)
    plan = _plan(manifest_path, opts, out_dir)  # validates the manifest; writes nothing
    if out_dir is None and folder.is_dir():  # a user's own `pack/` there is refused before anything lands in it
        from manifests.paths import claim_folder, is_ours

        if not is_ours(folder) and any(folder.iterdir()):
            claim_folder(folder)  # raises, naming the folder
    with locked(folder, opts.stem):
        if out_dir is None:  # tagged under the lock, so the ranks of one job never race on it
            from manifests.paths import claim_folder

            claim_folder(folder)
        if _stat_key(manifest_path) != before:
            plan = _plan(manifest_path, opts, out_dir)
        yield plan


def preprocess_manifest(manifest_path: str | os.PathLike, opts: PrepOptions = PrepOptions(),
                        out_dir: str | os.PathLike | None = None, *, progress: bool = True) -> PackInfo:
    """Build the pack (always) and write pack_index/prep_* into the manifest.

    The pack goes to `out_dir` (default `<manifest folder>/pack/`) as
    `<stem>.npy` + `<stem>.json`, e.g. `pad-black-128.npy`.
    """
    with _planned(manifest_path, opts, out_dir) as plan:
        return _build(plan, opts, progress)


def ensure_pack(manifest_path: str | os.PathLike, opts: PrepOptions = PrepOptions(),
                out_dir: str | os.PathLike | None = None, *, progress: bool = True) -> PackInfo:
    """The pack for this manifest and these options, rebuilt only when stale.

    Up to date means: a sidecar with the same fingerprint (parameters and
    inputs) and the very `.npy` it was written with. When the pack is up to
    date but the manifest lacks its columns (e.g. it was rewritten by `curate
    filter`), only the columns are written back; the pack is not touched.
    Safe to call from several processes at once (the first builds, the others wait).
    """
    with _planned(manifest_path, opts, out_dir) as plan:
        return _ensure(plan, opts, progress)


def _ensure(plan: _Plan, opts: PrepOptions, progress: bool) -> PackInfo:
    try:
        meta = read_sidecar(plan.npy_path)
    except PackError:
        meta = None
    if meta is None or meta.get("fingerprint") != plan.fingerprint or not is_intact(plan.npy_path, meta):
        log.info("pack %s is missing or stale; building it", plan.npy_path)
        return _build(plan, opts, progress)
    cols = columns(plan, meta)
    m = plan.manifest
    recorded = (m.stage_params(STAGE) or {}).get("fingerprint")
    if not columns_match(m.df, cols) or recorded != plan.fingerprint:
        log.info("pack %s is up to date; writing its columns back into %s", plan.npy_path, plan.manifest_path)
        write_columns(plan, meta, cols)
    meta = _sync_pngs(plan, meta, opts.png, progress)
    return _info(plan, meta, rebuilt=False)
