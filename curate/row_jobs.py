"""Per-row jobs of the pixel stages (score, dedupe): what a worker needs for a row, its image, and
which rows still need doing (they run through `curate.row_stage.run_rows`).
"""
from __future__ import annotations

import os
from pathlib import Path

from manifests.paths import decoded_path, present, sample_image_path


def _list(v):
    """A list cell as a list (None for a null or an empty list); rows come as pandas or Arrow
    records, so pandas' NA is recognised by type name (this module does not import pandas)."""
    if v is None or type(v).__name__ == "NAType":
        return None
    try:
        out = list(v)
    except TypeError:
        return None
    return out or None


def row_job(folder: Path, root: str, row) -> dict:
    """What a worker needs for one row (plain, picklable)."""
    sample = sample_image_path(folder, root, row)
    decoded = decoded_path(folder, root, row)
    crop_box, primary = _list(row.get("crop_box")), _list(row.get("primary_box"))
    box = None
    if present(row.get("crop_path")) and crop_box and primary:
        box = [primary[0] - crop_box[0], primary[1] - crop_box[1],
               primary[2] - crop_box[0], primary[3] - crop_box[1]]
    side = max(primary[2] - primary[0], primary[3] - primary[1]) if primary else None
    usable = str(row.get("status")) == "ok" or present(row.get("repaired_path"))
    crop_index = int(row["crop_index"]) if present(row.get("crop_index")) else 0
    return {"sample_id": str(row["sample_id"]), "sample": str(sample), "decoded": str(decoded),
            "box": box, "box_side": side, "usable": usable, "crop_index": crop_index}


class JobImageError(Exception):
    """A row job's image cannot be had; the message is what the stage records as the row's error."""


def load_job_rgb(job: dict, key: str = "sample"):
    """The RGB image at `job[key]` (see `row_job`), or `JobImageError` with the reason:
    the row is not usable, or the file does not decode."""
    return load_job_decoded(job, key).image


def load_job_decoded(job: dict, key: str = "sample", at_least: int | None = None):
    """`load_job_rgb` as a `curate.decoded.Decoded`: with `at_least`, a large JPEG comes decoded
    smaller."""
    from PIL import Image, UnidentifiedImageError

    from .decoded import load

    if not job["usable"]:
        raise JobImageError("not decodable (scan status not ok, no repaired copy)")
    try:
        return load(job[key], at_least)
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError,
            SyntaxError) as exc:
        raise JobImageError(f"{type(exc).__name__}: {exc}") from None


def stale_jobs(jobs: list[dict], done: dict[str, dict], folder: Path, source_col: str) -> list[dict]:
    """The jobs (see `row_job`) with no result in `done`, or one made from another source file."""
    return [j for j in jobs if j["sample_id"] not in done
            or done[j["sample_id"]].get(source_col) not in (j["sample"], relative_source(folder, j["sample"]))]


def relative_source(folder: Path, p: str) -> str:
    """`p` relative to the manifest folder when inside it, else as given (symlinks not followed:
    a user's path may be a broken link or a link loop)."""
    ap, af = os.path.abspath(p), os.path.abspath(folder)
    if os.path.commonpath([ap, af]) == af:
        return Path(os.path.relpath(ap, af)).as_posix()
    return str(p)
