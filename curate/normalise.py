"""Turn any decoded Pillow image into plain 8-bit sRGB RGB, saying what was changed.

Order: EXIF orientation, then the ICC profile (to sRGB), then the pixel mode
(16-bit scaled to 8-bit, palette/grey/CMYK converted, transparency composited on
a background colour). Also: recover what survives of a truncated file.
"""
from __future__ import annotations

import io
import threading
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageCms, ImageFile

ORIENTATION_TAG = 0x0112
ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_TRUNCATED_LOCK = threading.Lock()


def icc_description(icc: bytes | None) -> str | None:
    """The profile's description, "unparseable ICC profile", or None without a profile."""
    if not icc:
        return None
    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip() \
            or "unnamed ICC profile"
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return "unparseable ICC profile"


def is_srgb(description: str | None) -> bool:
    """No profile counts as sRGB; so does any profile whose description names sRGB."""
    return description is None or "srgb" in description.lower().replace(" ", "")


@contextmanager
def truncated_images_allowed():
    """Let Pillow decode truncated files inside this block only.

    Pillow reads `ImageFile.LOAD_TRUNCATED_IMAGES`, a module global, so this sets it
    and puts the old value back, under a lock (repair runs it in worker processes).
    """
    with _TRUNCATED_LOCK:
        old = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = old


def decoded_row_fraction(im: Image.Image, fmt: str | None) -> float:
    """Share of rows a truncated decode really produced (an estimate).

    Pillow leaves what was not decoded as a fill: grey 128 for JPEG (a zero DC
    coefficient), zeros for PNG and the others. Rows from the bottom up that are
    entirely that fill are counted as lost; a picture whose real bottom rows are
    exactly the fill colour is therefore under-counted.
    """
    a = np.asarray(im)
    if a.ndim == 2:
        a = a[..., None]
    h = a.shape[0]
    if h == 0:
        return 0.0
    fill = 128 if fmt in ("JPEG", "MPO") else 0
    from_bottom = (a.reshape(h, -1) == fill).all(axis=1)[::-1]
    lost = h if from_bottom.all() else int(np.argmin(from_bottom))  # leading True count
    return (h - lost) / h


def _sixteen_to_eight(im: Image.Image) -> Image.Image:
    a = np.asarray(im).astype(np.float64)
    if im.mode == "F":
        scale = 255.0 if a.size and np.nanmax(a) <= 1.0 else 1.0
        a = a * scale
    elif im.mode.startswith("I;16") or (a.size and a.max() > 255):
        a = a / 257.0
    return Image.fromarray(np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8), "L")


def _has_transparency(im: Image.Image) -> bool:
    return im.mode in ALPHA_MODES or (im.mode in ("P", "L", "RGB") and "transparency" in im.info)


# EXIF orientation -> the transposition that shows the picture upright (as ImageOps.exif_transpose)
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90,
}


def exif_orientation(im: Image.Image) -> int | None:
    try:
        o = im.getexif().get(ORIENTATION_TAG)
    except (OSError, ValueError, SyntaxError, TypeError):
        return None
    return o if isinstance(o, int) else None


def to_srgb_rgb(im: Image.Image, *, background: tuple[int, int, int], icc: bytes | None,
                orientation: int | None = None, icc_to_srgb: bool = True
                ) -> tuple[Image.Image, list[str], bool]:
    """(RGB image, what was done, whether `background` was used).

    `orientation` is the EXIF orientation to apply (read it with `exif_orientation`
    before seeking in an animation: frames carry no EXIF of their own).
    """
    reasons: list[str] = []
    if orientation in _TRANSPOSE:
        im = im.transpose(_TRANSPOSE[orientation])
        reasons.append(f"EXIF orientation {orientation} applied")
    desc = icc_description(icc)
    if icc_to_srgb and not is_srgb(desc):
        converted = _icc_to_srgb(im, icc, desc, reasons)
        if converted is not None:
            im = converted
    used_background = False
    mode = im.mode
    if mode == "RGB":
        pass
    elif _has_transparency(im):
        rgba = im.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            base = Image.new("RGBA", rgba.size, (*background, 255))
            im = Image.alpha_composite(base, rgba).convert("RGB")
            used_background = True
            reasons.append(f"mode {mode} with transparency composited on the background")
        else:
            im = rgba.convert("RGB")
            reasons.append(f"mode {mode} (fully opaque) -> RGB")
    elif mode in ("I", "F") or mode.startswith("I;16"):
        im = _sixteen_to_eight(im).convert("RGB")
        reasons.append(f"{'16-bit' if mode != 'F' else 'float'} mode {mode} scaled to 8-bit -> RGB")
    else:
        im = im.convert("RGB")
        reasons.append(f"mode {mode} -> RGB")
    return im, reasons, used_background


def _icc_to_srgb(im, icc, desc, reasons) -> Image.Image | None:
    alpha = None
    src_mode = im.mode
    if src_mode in ("RGBA", "LA"):
        alpha = im.getchannel("A")
        im = im.convert("RGB" if src_mode == "RGBA" else "L")
    if im.mode not in ("RGB", "L", "CMYK"):
        reasons.append(f"ICC profile '{desc}' not applied to mode {im.mode}")
        return None
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        reasons.append(f"ICC profile '{desc}' could not be applied ({exc}); used as is")
        return None
    reasons.append(f"ICC profile '{desc}' ({src_mode}) converted to sRGB")
    if alpha is not None:
        out.putalpha(alpha)
    return out
