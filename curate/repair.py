"""`curate repair`: normalised RGB copies of the files that need one, never over the originals.

For every file row (crop_index 0) it records `repair_action` (none | converted |
best_frame | recovered | unrecoverable | skipped) and `repair_reason`; files that
need work get an 8-bit sRGB RGB PNG in the content-addressed cache
`<manifest folder>/cache/repaired/<aa>/<digest>.png`, where the digest hashes the
source's sha256 with the repair parameters (`repair_key`). Rows with
crop_index > 0 (added by detect) get the same repair columns as their file.

- fine (RGB, one frame, upright, no or sRGB ICC profile): `none`, decided from the
  scan columns without opening the file; nothing is copied.
- animated GIF/WebP/APNG: `best_frame` (see `curate.frames`), `frame_index` recorded.
- CMYK/YCCK, palette, grey, 16-bit, LA/RGBA (composited on `background`), EXIF
  orientation, ICC profile -> sRGB: `converted`, with what was done in the reason.
- truncated (or corrupt) JPEG/PNG: decoded with truncated data allowed (inside
  `curate.normalise.truncated_images_allowed`); `recovered` when at least
  `min_recovered` of the rows decode, else `unrecoverable`; `recovered_fraction` either way.
- anything else that did not scan `ok` (empty, not_an_image, too_large, ...): `skipped`.

Resume: a row already repaired with the same `repair_key` whose cache file still
exists is not redone; the manifest is rewritten every `checkpoint_every` rows, and the rows an
interrupted run finished come back from its journal (`curate.row_stage`).
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from dataclasses import asdict
from functools import partial
from pathlib import Path

from manifests import read_manifest, write_manifest
from common.errors import UserError
from manifests.io import Manifest
from manifests.paths import cache_file, relative_to_manifest
from manifests.schema import repair as repair_schema

from common.pool import resolve_workers
from .repair_worker import (REPAIR_COLUMNS, REPAIRABLE, RepairOptions, present,
                            decide_without_opening, fine_as_is, repair_file, repair_many)
from .row_stage import Journal, run_rows
from . import engine
from .work_lock import locks_manifest

__all__ = ["RepairOptions", "repair_manifest", "repair_file", "fine_as_is", "REPAIRABLE"]

CACHE_KIND = "repaired"
if REPAIR_COLUMNS != [f.name for f in repair_schema.FIELDS]:
    raise RuntimeError("curate.repair_worker.REPAIR_COLUMNS is out of step with manifests.schema.repair")
log = logging.getLogger(__name__)


def cache_target(manifest_path: str | os.PathLike, row: dict, key: str) -> tuple[str, str]:
    """(absolute path, path relative to the manifest folder) of a row's repaired copy."""
    digest = hashlib.sha256(f"{row['sha256']}:{key}".encode()).hexdigest()
    target = cache_file(manifest_path, CACHE_KIND, digest, ".png")
    return str(target), relative_to_manifest(manifest_path, target)


def repair_columns(results: list[dict]) -> dict[str, list]:
    """The repair columns of `results` (one per row), by sample id, for `Manifest.with_columns`."""
    return {"sample_id": [str(r["sample_id"]) for r in results],
            **{c: [r.get(c) if present(r.get(c)) else None for r in results] for c in REPAIR_COLUMNS}}


def _clean_row(r: dict) -> dict:
    return {k: (v if present(v) else None) for k, v in r.items()}


def _already_done(row: dict, key: str, folder: Path) -> bool:
    if row.get("repair_key") != key or not present(row.get("repair_action")):
        return False
    rp = row.get("repaired_path")
    return not present(rp) or (folder / rp).is_file()


@locks_manifest()
def repair_manifest(manifest_path: str | os.PathLike, opts: RepairOptions = RepairOptions(), *,
                    workers: int | None = None, progress: bool = True):
    """Repair every file row of the manifest (in place); return the updated `Manifest`."""
    opts.check()
    manifest_path = Path(os.path.abspath(manifest_path))
    m = read_manifest(manifest_path)
    if not m.root:
        raise UserError(f"{manifest_path} does not say which folder it lists (no root); "
                        "make it with `curate scan`")
    workers = resolve_workers(workers)
    key = opts.key()
    folder = manifest_path.parent
    wanted = [c for c in ("sample_id", "path", "status", "error", "format", "mode", "n_frames",
                          "exif_orientation", "icc_profile", "sha256",
                          "repair_key", "repair_action", "repaired_path") if c in m.columns]
    rows = [_clean_row(r) for r in m.records([*wanted, "crop_index"]) if r.pop("crop_index") == 0]
    results: dict[str, dict] = {}
    todo: list[dict] = []
    reused = 0
    journal = Journal(manifest_path, "repair", key)
    journaled = journal.load()      # rows repaired by a run that was interrupted
    for r in rows:
        if _already_done(r, key, folder):
            reused += 1
            continue
        rec = journaled.get(r["sample_id"])
        if rec is not None and (not present(rec.get("repaired_path")) or (folder / rec["repaired_path"]).is_file()):
            results[r["sample_id"]] = rec
            continue
        decided = decide_without_opening(r, key)
        if decided is not None:
            results[r["sample_id"]] = decided
        else:
            todo.append(r)
    params = {**asdict(opts), "background": opts.background_hex(), "repair_key": key,
              "workers": workers, **engine.current().describe()}
    base_history, base = list(m.history), m.table

    def write(complete: bool) -> None:
        out = Manifest(table=base, root=m.root, history=list(base_history))
        if results:
            out.with_columns(repair_columns(list(results.values())))
        _copy_to_crop_rows(out)
        counts = Counter(r["repair_action"] for r in results.values())
        write_manifest(out, manifest_path, stage="repair", input_path=manifest_path,
                       params={**params, "complete": complete, "reused": reused,
                               "actions": dict(sorted(counts.items()))})

    fn = partial(repair_many, root=m.root, opts=opts)
    items = [(r, *cache_target(manifest_path, r, key)) for r in todo]

    run_rows(fn, items, results, journal, workers=workers, chunk_size=opts.chunk_size, progress=progress,
             desc="repair", publish=write, every=opts.checkpoint_every, seconds=opts.checkpoint_seconds)
    journal.remove()
    counts = Counter(r["repair_action"] for r in results.values())
    log.info("repaired %s: %d row(s) unchanged since the last repair; %s", manifest_path, reused,
             ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return read_manifest(manifest_path)


def _copy_to_crop_rows(m: Manifest) -> None:
    """Rows added by detect (crop_index > 0) share their file's repair columns."""
    if "repair_action" not in m.columns:
        return
    rows = m.records(["sample_id", "path", "crop_index", *REPAIR_COLUMNS])
    crops = [r for r in rows if r["crop_index"] != 0]
    if not crops:
        return
    base: dict[str, dict] = {}
    for r in rows:
        if r["crop_index"] == 0:
            base.setdefault(r["path"], r)
    have = [c for c in REPAIR_COLUMNS if c in m.columns]
    m.with_columns({"sample_id": [r["sample_id"] for r in crops],
                    **{c: [base.get(r["path"], {}).get(c) for r in crops] for c in have}})
