"""A decoded photo, possibly decoded smaller than it is, and what it stands for.

Pillow decodes a JPEG at 1/2, 1/4 or 1/8 of its size straight from the DCT coefficients
(`Image.draft`): for a photo several times larger than a check looks at, most of the decode and of
the reductions after it are spared. Such an image is `ceil(size / scale)` pixels, so its last column
and row stand for only part of a pixel of the reduced photo: `region` is the part of it that is
the photo (fractional, in its pixels), and every reduction of it goes through `Decoded.resize`,
which reduces exactly that part. What it moves the score values by: README's figures table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from .normalise import ORIENTATION_TAG

TURNS_SIDES = (5, 6, 7, 8)     # EXIF orientations that swap width and height
DCT_SCALES = (8, 4, 2)


def dct_scale(size: tuple[int, int], at_least: int) -> int:
    """The largest of `DCT_SCALES` at which the longer side of `size` is still >= `at_least` (1
    when none is)."""
    for s in DCT_SCALES:
        if max(size) // s >= at_least and min(size) >= s:
            return s
    return 1


@dataclass(frozen=True)
class Decoded:
    image: Image.Image
    size: tuple[int, int]      # the photo's own size (after EXIF orientation)
    region: tuple[float, float, float, float] | None = None   # of `image`; None: all of it
    scale: int = 1             # `image` is about `size / scale`

    @classmethod
    def of(cls, img: "Image.Image | Decoded") -> "Decoded":
        return img if isinstance(img, Decoded) else cls(img, img.size)

    @property
    def reduced(self) -> bool:
        return self.scale > 1

    def at_scale(self, scale: int) -> "Decoded":
        """This photo at 1/`scale` of its size: itself when decoded so, else (decoded at full size)
        reduced by box averages (`Image.reduce`, close to what the JPEG decoder's DCT scaling
        gives), so that copies of a photo in other formats reduce alike. A photo decoded at another
        scale stays as it is."""
        if scale == self.scale or self.reduced:
            return self
        w, h = self.size
        return Decoded(self.image.reduce(scale), self.size, (0, 0, w / scale, h / scale), scale)

    def resize(self, size: tuple[int, int], resample, reducing_gap: float | None = None) -> Image.Image:
        """`Image.resize` of the part of `image` that is the photo."""
        return self.image.resize(size, resample, box=self.region, reducing_gap=reducing_gap)

    def convert(self, mode: str) -> "Decoded":
        img = self.image if self.image.mode == mode else self.image.convert(mode)
        return Decoded(img, self.size, self.region, self.scale)


def draft(im: Image.Image, scale: int) -> tuple[tuple[float, float, float, float] | None, int]:
    """Ask Pillow's JPEG decoder, before `load`, for `im` at 1/`scale` (one of `DCT_SCALES`; asking
    for `size // scale` makes it pick exactly that scale): (the region of the smaller image that
    is the photo, the scale got); (None, 1) for 1, or a JPEG that decodes at full size only."""
    if scale <= 1:
        return None, 1
    w, h = im.size
    got = im.draft(im.mode, (w // scale, h // scale))
    return (None, 1) if got is None else (got[1], round(w / got[1][2]))


def _turned_region(region, size, orientation) -> tuple[float, float, float, float]:
    """`region` (x0, y0, x1, y1 with x0 = y0 = 0) of an image of `size`, after the EXIF
    `orientation`'s turn (as `ImageOps.exif_transpose` makes it)."""
    w, h = size
    px, py = w - region[2], h - region[3]       # the part-pixel pad, at the right and bottom
    return {2: (px, 0, w, h - py), 3: (px, py, w, h), 4: (0, py, w - px, h),
            5: (0, 0, h - py, w - px), 6: (py, 0, h, w - px), 7: (py, px, h, w),
            8: (0, px, h - py, w)}.get(orientation, region)


def load(path, at_least: int | None = None) -> Decoded:
    """Decode an image, honouring EXIF orientation, as RGB (transparency composited on white).

    With `at_least`, a JPEG is decoded at its `dct_scale`: a photo whose longer side is 1,600 px at
    1/4 of its size for `at_least=256`."""
    from PIL import ImageOps

    with Image.open(path) as im:
        w, h = im.size
        region, scale = draft(im, dct_scale((w, h), at_least) if at_least and im.format == "JPEG" else 1)
        im.load()
        orientation = im.getexif().get(ORIENTATION_TAG)
        if region is not None:
            region = _turned_region(region, im.size, orientation)
        ImageOps.exif_transpose(im, in_place=True)      # no copy of a photo that needs no turning
        size = (h, w) if orientation in TURNS_SIDES else (w, h)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im)
        return Decoded(im if im.mode == "RGB" else im.convert("RGB"), size, region, scale)
