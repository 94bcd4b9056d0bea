"""Box geometry and reproducible crops.

A crop is defined by the decoded image (see `decode_rgb`) and an integer
`crop_box`; `crop_png` turns the two into PNG bytes, and `recrop` rebuilds the
same bytes from a manifest row, so a stored crop can always be checked or
rebuilt from the recorded fields.
"""
from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path

import numpy as np

EDGE_PX = 3          # a box closer than this to a border counts as cut off
# Fixed PNG settings: same pixels -> same bytes. Level 1: on the web photos' crops the files are as
# small as at level 6 (zlib's default) and encoding takes 9 ms instead of 22 (benchmarks/detect.py).
PNG_COMPRESS = 1


# --------------------------------------------------------------------------- boxes

def box_area(box) -> float:
    x0, y0, x1, y1 = box[:4]
    return max(0.0, float(x1) - float(x0)) * max(0.0, float(y1) - float(y0))


def margin_box(box, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """`box` grown by `margin` x its width/height on each side, rounded outwards, clamped to the image.

    Always at least one pixel wide and high.
    """
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    cx0 = min(max(math.floor(x0 - dx), 0), width - 1)
    cy0 = min(max(math.floor(y0 - dy), 0), height - 1)
    cx1 = max(min(math.ceil(x1 + dx), width), cx0 + 1)
    cy1 = max(min(math.ceil(y1 + dy), height), cy0 + 1)
    return cx0, cy0, cx1, cy1


def touching(box, width, height, edge_px: float = EDGE_PX) -> tuple[bool, bool, bool, bool]:
    """Which image borders (left, top, right, bottom) the box reaches within `edge_px`."""
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    return (x0 <= edge_px, y0 <= edge_px, x1 >= float(width) - edge_px, y1 >= float(height) - edge_px)


def is_cut_off(box, width: int, height: int, edge_px: float = EDGE_PX) -> bool:
    """True when the box reaches within `edge_px` of any image border."""
    return any(touching(box, width, height, edge_px))


def covered_fraction(box, others) -> float:
    """Share of `box`'s area covered by the union of the `others` boxes (exact, 0..1)."""
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    area = box_area(box)
    if area <= 0:
        return 0.0
    clipped = []
    for o in others:
        ox0, oy0 = max(x0, float(o[0])), max(y0, float(o[1]))
        ox1, oy1 = min(x1, float(o[2])), min(y1, float(o[3]))
        if ox1 > ox0 and oy1 > oy0:
            clipped.append((ox0, oy0, ox1, oy1))
    if not clipped:
        return 0.0
    # Coordinate compression: mark the grid cells the clipped boxes cover, sum their areas.
    xs = np.unique([v for c in clipped for v in (c[0], c[2])])
    ys = np.unique([v for c in clipped for v in (c[1], c[3])])
    covered = np.zeros((len(ys) - 1, len(xs) - 1), dtype=bool)
    for cx0, cy0, cx1, cy1 in clipped:
        i0, i1 = np.searchsorted(ys, cy0), np.searchsorted(ys, cy1)
        j0, j1 = np.searchsorted(xs, cx0), np.searchsorted(xs, cx1)
        covered[i0:i1, j0:j1] = True
    cell = np.outer(np.diff(ys), np.diff(xs))
    return float(min(1.0, (cell * covered).sum() / area))


# --------------------------------------------------------------------------- pixels

def decode_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file the way detection and cropping see it.

    First frame, EXIF orientation applied, converted to 8-bit RGB; returns an
    (H, W, 3) uint8 array. Raises OSError / ValueError / SyntaxError (Pillow's
    errors for broken files) or `Image.DecompressionBombError`.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.seek(0)
        im = ImageOps.exif_transpose(im)
        return np.asarray(im.convert("RGB"))


def crop_png(rgb: np.ndarray, crop_box) -> bytes:
    """PNG bytes of `rgb[y0:y1, x0:x1]`, with fixed encoder settings and no metadata."""
    from PIL import Image

    x0, y0, x1, y1 = (int(v) for v in crop_box[:4])
    region = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    buf = io.BytesIO()
    Image.fromarray(region, mode="RGB").save(buf, format="PNG", compress_level=PNG_COMPRESS,
                                             optimize=False)
    return buf.getvalue()


def crop_digest(source_sha256: str, crop_box, decoded_from: str = "") -> str:
    """Content address of a crop: the source file's sha256, which decoded copy, the crop box."""
    box = ",".join(str(int(v)) for v in crop_box[:4])
    return hashlib.sha256(f"{source_sha256}|{decoded_from}|{box}".encode()).hexdigest()


def recrop(manifest_folder: str | Path, root: str | Path, row) -> bytes:
    """Rebuild a row's crop PNG from its recorded fields (decoded source + `crop_box`).

    The result equals the stored crop byte for byte (same Pillow/zlib build).
    """
    from manifests.paths import decoded_path

    box = row["crop_box"]
    if box is None or len(box) != 4:
        raise ValueError(f"row {row['sample_id']} has no crop_box")
    return crop_png(decode_rgb(decoded_path(manifest_folder, root, row)), box)
