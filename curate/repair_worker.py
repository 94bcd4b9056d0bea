"""Repair one file: what runs in `curate repair`'s worker processes.

Imports Pillow, numpy and the standard library only (not `manifests`, whose
pandas import would slow every worker's start); the caller works out where each
copy goes. See `curate.repair` for what each `repair_action` means.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, fields

from PIL import Image, ImageColor

from common.atomic import atomic_path

from .frames import best_frame
from .sniff import register_optional_decoders
from .normalise import (decoded_row_fraction, exif_orientation, is_srgb, to_srgb_rgb,
                        truncated_images_allowed)

REPAIR_VERSION = 1  # bump when the same parameters would give different pixels
REPAIRABLE = ("ok", "truncated", "corrupt")
# the columns of manifests.schema.repair, listed here so workers need not import manifests
REPAIR_COLUMNS = ["repair_action", "repair_reason", "repaired_path", "frame_index",
                  "recovered_fraction", "background", "repair_key"]


@dataclass(frozen=True)
class RepairOptions:
    """Options of `curate repair` (the CLI's defaults come from here)."""

    background: str = "#ffffff"     # colour transparent pixels are composited on
    min_recovered: float = 0.4      # a truncated file must keep this share of its rows
    max_frames: int = 64            # frames scored per animation (evenly spaced beyond)
    blank_std: float = 3.0          # a frame whose grey std is below this is blank
    icc_to_srgb: bool = True        # convert embedded non-sRGB ICC profiles to sRGB
    png_compress_level: int = 1     # of the cached copies (1 = fast, 9 = small)
    checkpoint_every: int = 200     # rewrite the manifest after this many rows ...
    checkpoint_seconds: float = 60.0  # ... or seconds
    chunk_size: int = 8             # rows per task sent to a worker process

    _NOT_IN_KEY = ("png_compress_level", "checkpoint_every", "checkpoint_seconds", "chunk_size")

    def background_rgb(self) -> tuple[int, int, int]:
        from common.errors import UserError

        try:
            rgb = ImageColor.getrgb(self.background)
        except ValueError:
            raise UserError(f"--background must be a colour such as '#ffffff' or 'white' "
                            f"(got {self.background!r})") from None
        return tuple(rgb[:3])

    def check(self) -> None:
        from common.errors import UserError

        self.background_rgb()
        if not 0.0 <= self.min_recovered <= 1.0:
            raise UserError(f"--min-recovered must be within [0, 1] (got {self.min_recovered})")
        if self.max_frames < 1:
            raise UserError(f"--max-frames must be at least 1 (got {self.max_frames})")
        if not 0 <= self.png_compress_level <= 9:
            raise UserError(f"png_compress_level must be within 0..9 (got {self.png_compress_level})")
        if self.checkpoint_every < 1 or self.chunk_size < 1:
            raise UserError("checkpoint_every and chunk_size must be at least 1")

    def background_hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.background_rgb())

    def key(self) -> str:
        """Hash of everything that changes the repaired pixels."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._NOT_IN_KEY}
        d["background"] = self.background_hex()
        d["version"] = REPAIR_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def present(v) -> bool:
    """Not None, NaN or pandas' NA (recognised by type name: workers do not import pandas)."""
    return not (v is None or type(v).__name__ == "NAType" or (isinstance(v, float) and math.isnan(v)))


# Formats every later stage (and the people looking at crops) can open; others get a PNG copy.
PORTABLE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF"})


def fine_as_is(row: dict) -> bool:
    """Decided from the scan columns: RGB, one frame, upright, no ICC or an sRGB one, a common format."""
    n = row.get("n_frames")
    o = row.get("exif_orientation")
    icc = row.get("icc_profile")
    fmt = row.get("format")
    return (row.get("mode") == "RGB" and (not present(n) or n <= 1)
            and (not present(fmt) or fmt in PORTABLE_FORMATS)
            and (not present(o) or o in (0, 1)) and is_srgb(icc if present(icc) else None))


def _result(row: dict, key: str, action: str, reason: str | None = None, **extra) -> dict:
    out = {c: None for c in REPAIR_COLUMNS}
    out.update(sample_id=row["sample_id"], repair_action=action, repair_reason=reason,
               repair_key=key, **extra)
    return out


def decide_without_opening(row: dict, key: str) -> dict | None:
    """The result for rows that need no pixels (skipped / none), else None."""
    if row["status"] not in REPAIRABLE:
        err = row.get("error")
        why = f"scan status {row['status']}" + (f": {err}" if present(err) and err else "")
        return _result(row, key, "skipped", why[:500])
    if row["status"] == "ok" and fine_as_is(row):
        return _result(row, key, "none")
    return None


def _save(image: Image.Image, target: str, opts: RepairOptions) -> None:
    """Write the copy atomically (temp file in the same folder, then os.replace)."""
    if os.path.exists(target):  # content-addressed: same source and parameters, same pixels
        return
    with atomic_path(target) as tmp:
        image.save(tmp, "PNG", compress_level=opts.png_compress_level)


def _repair_ok(source: str, row: dict, opts: RepairOptions, bg) -> tuple[Image.Image, str, dict, bool]:
    with Image.open(source) as im:
        icc = im.info.get("icc_profile")
        orientation = exif_orientation(im)
        n = int(getattr(im, "n_frames", 1))
        extra: dict = {}
        if n > 1:
            idx, frame, scores, problem = best_frame(im, background=bg, max_frames=opts.max_frames,
                                                     blank_std=opts.blank_std)
            blank = [s.index for s in scores if s.blank]
            what = (f"animated {im.format or row.get('format')}, {n} frames: frame {idx} scores "
                    "best on sharpness x colourfulness")
            if blank:
                what += f"; blank frame(s) {', '.join(map(str, blank[:8]))}"
            if problem:
                what += f"; {problem}"
            rgb, reasons, used_bg = to_srgb_rgb(frame, background=bg, icc=icc,
                                                orientation=orientation,
                                                icc_to_srgb=opts.icc_to_srgb)
            extra["frame_index"] = idx
            return rgb, "; ".join([what, *reasons]), extra, used_bg
        im.load()
        rgb, reasons, used_bg = to_srgb_rgb(im, background=bg, icc=icc, orientation=orientation,
                                            icc_to_srgb=opts.icc_to_srgb)
        fmt = im.format or row.get("format")
        if fmt and fmt not in PORTABLE_FORMATS:
            reasons = [*reasons, f"{fmt} copied as PNG so every stage can read it"]
        return rgb, "; ".join(reasons), extra, used_bg


def repair_file(source: str, row: dict, *, target: str, target_rel: str, opts: RepairOptions) -> dict:
    """Repair one file row (a dict with the scan columns); return its repair columns.

    A copy, when one is needed, is written to `target` (absolute) and recorded as
    `target_rel` (relative to the manifest folder).
    """
    register_optional_decoders()
    key = opts.key()
    decided = decide_without_opening(row, key)
    if decided is not None:
        return decided
    bg = opts.background_rgb()
    fmt = row.get("format") if present(row.get("format")) else None
    try:
        if row["status"] == "ok":
            rgb, reason, extra, used_bg = _repair_ok(source, row, opts, bg)
            action = "best_frame" if "frame_index" in extra else "converted"
            if not reason:
                return _result(row, key, "none")
        else:
            with truncated_images_allowed(), Image.open(source) as im:
                im.load()
                fraction = decoded_row_fraction(im, im.format or fmt)
                icc = im.info.get("icc_profile")
                orientation = exif_orientation(im)
                if fraction < opts.min_recovered:
                    return _result(row, key, "unrecoverable",
                                   f"{row['status']} {fmt or 'file'}: only {fraction:.0%} of rows "
                                   f"decode (min_recovered {opts.min_recovered:.0%})",
                                   recovered_fraction=fraction)
                rgb, reasons, used_bg = to_srgb_rgb(im, background=bg, icc=icc,
                                                    orientation=orientation,
                                                    icc_to_srgb=opts.icc_to_srgb)
            action, extra = "recovered", {"recovered_fraction": fraction}
            reason = "; ".join([f"{row['status']} {fmt or 'file'}: {fraction:.0%} of rows decode, "
                                "the rest is fill", *reasons])
    except Exception as exc:  # noqa: BLE001 - a file that fails to decode is this row's outcome
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        frac = {"recovered_fraction": 0.0} if row["status"] != "ok" else {}
        return _result(row, key, "unrecoverable", f"decoding failed: {text}"[:500], **frac)
    _save(rgb, target, opts)
    return _result(row, key, action, reason[:1000], repaired_path=target_rel,
                   background=opts.background_hex() if used_bg else None, **extra)


def repair_many(items: list[tuple[dict, str, str]], *, root: str, opts: RepairOptions) -> list[dict]:
    """A chunk of (row, target, target_rel): the unit of work sent to a process."""
    return [repair_file(os.path.join(root, row["path"]), row, target=target, target_rel=rel,
                        opts=opts) for row, target, rel in items]
