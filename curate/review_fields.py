"""What a manifest row becomes in the FiftyOne dataset: plain field values, the columns shown, the
detections as boxes on the picture shown, and a placeholder tile for rows without pixels."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from manifests import COLUMNS

RESERVED = {"id", "_id", "filepath", "tags", "metadata", "media_type", "created_at", "last_modified_at",
            "frames", "group"}
HIDDEN = {"review_decision", "review_tags", "mtime_ns", "sha256", "weights_sha256"}


def scalar(v):
    """A pandas/numpy cell as a plain Python value (None for any kind of missing)."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if math.isnan(v) else float(v)
    return v


def field_columns(df: pd.DataFrame) -> list[str]:
    """Scalar manifest columns shown as sample fields (lists, structs and internals are not)."""
    out = []
    for c in df.columns:
        if c in RESERVED or c in HIDDEN:
            continue
        declared = COLUMNS.get(c)
        if declared is not None and pa.types.is_nested(declared.type):
            continue
        dt = df[c].dtype
        if not (pd.api.types.is_bool_dtype(dt) or pd.api.types.is_numeric_dtype(dt)
                or pd.api.types.is_string_dtype(dt)):
            continue
        if dt == object and any(isinstance(x, (list, tuple, np.ndarray, dict)) for x in df[c]):
            continue
        out.append(c)
    return out


def display_size(path: Path) -> tuple[int, int] | None:
    """Width and height as a browser shows the file (EXIF orientation applied); None if unreadable."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():  # a FIFO would block the open forever; loops and dangling links fail
        return None
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1) if im.format in ("JPEG", "TIFF", "WEBP", "PNG") else 1
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def has_crop(row) -> bool:
    cp = row.get("crop_path")
    return cp is not None and cp is not pd.NA and str(cp) not in ("", "nan", "<NA>")


def detections(row, size: tuple[int, int] | None, showing_crop: bool):
    """The row's detections as FiftyOne boxes relative to the image shown (crop or full image)."""
    import fiftyone as fo

    dets = row.get("detections")
    if dets is None or (not isinstance(dets, (list, tuple, np.ndarray))) or len(dets) == 0:
        return None
    if showing_crop:
        box = row.get("crop_box")
        if box is None or len(box) != 4:
            return None
        ox, oy, x1, y1 = (float(b) for b in box)
        fw, fh = x1 - ox, y1 - oy
    else:
        if size is None:
            return None
        ox, oy = 0.0, 0.0
        fw, fh = float(size[0]), float(size[1])
    if fw <= 0 or fh <= 0:
        return None
    out = []
    for d in dets:
        x0, y0 = max(float(d["x0"]) - ox, 0.0), max(float(d["y0"]) - oy, 0.0)
        x1_, y1_ = min(float(d["x1"]) - ox, fw), min(float(d["y1"]) - oy, fh)
        if x1_ <= x0 or y1_ <= y0:
            continue  # outside the crop
        conf = d.get("conf")
        out.append(fo.Detection(label=str(d.get("label") or "object"),
                                bounding_box=[x0 / fw, y0 / fh, (x1_ - x0) / fw, (y1_ - y0) / fh],
                                confidence=None if conf is None else float(conf)))
    return fo.Detections(detections=out)


PLACEHOLDER_SIZE = (256, 160)


def placeholder(manifest_path: Path, text: str) -> Path:
    """A grey tile naming why there is no picture, for rows without decodable pixels (the App
    shows images only; the original file stays in the `source` field)."""
    from PIL import Image, ImageDraw

    from common.atomic import atomic_path
    from manifests.paths import cache_file

    digest = hashlib.sha256(f"placeholder:{text}".encode()).hexdigest()
    out = cache_file(manifest_path, "review", digest)
    if not out.exists():
        tile = Image.new("RGB", PLACEHOLDER_SIZE, (96, 96, 96))
        ImageDraw.Draw(tile).text((12, 70), f"no picture: {text}"[:40], fill=(255, 255, 255))
        with atomic_path(out, suffix=".png") as tmp:
            tile.save(tmp, format="PNG")
    return out
