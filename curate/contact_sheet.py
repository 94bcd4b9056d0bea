"""Contact sheets: a grid of thumbnails with a caption under each, saved as one PNG."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from common.atomic import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SheetOptions:
    tile: int = 128          # thumbnail box, pixels
    cols: int = 8
    pad: int = 4
    caption_h: int = 14      # 0 for no captions
    background: tuple[int, int, int] = (255, 255, 255)
    missing: tuple[int, int, int] = (200, 200, 200)


def thumbnail(path: Path, size: int) -> Image.Image | None:
    """The image fitted into size x size (EXIF orientation applied), or None when it does not decode."""
    if not path.is_file():  # a FIFO would block the open forever; loops and dangling links fail
        return None
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))        # JPEG: decode at reduced scale
            im = ImageOps.exif_transpose(im)
            im = im.convert("RGB")
            im.thumbnail((size, size))
            return im
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        log.debug("no thumbnail for %s: %s", path, exc)
        return None


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)  # file names may hold newlines
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def contact_sheet(items: list[tuple[Path, str]], out: Path, opts: SheetOptions = SheetOptions()) -> Path:
    """Draw `(image path, caption)` items into a grid PNG at `out` (written atomically).

    A file that is missing or does not decode gets a grey tile saying which, so the sheet still has one
    tile per item.
    """
    out = Path(out)
    n = max(len(items), 1)
    cols = min(opts.cols, n)
    rows = (n + cols - 1) // cols
    cell_w, cell_h = opts.tile + opts.pad, opts.tile + opts.caption_h + opts.pad
    sheet = Image.new("RGB", (cols * cell_w + opts.pad, rows * cell_h + opts.pad), opts.background)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, (path, caption) in enumerate(items):
        x = opts.pad + (i % cols) * cell_w
        y = opts.pad + (i // cols) * cell_h
        im = thumbnail(Path(path), opts.tile)
        if im is None:
            draw.rectangle([x, y, x + opts.tile - 1, y + opts.tile - 1], fill=opts.missing)
            label = "does not decode" if Path(path).exists() else "file missing"
            draw.text((x + 4, y + opts.tile // 2 - 6), label, fill=(80, 0, 0), font=font)
        else:
            sheet.paste(im, (x + (opts.tile - im.width) // 2, y + (opts.tile - im.height) // 2))
        if opts.caption_h and caption:
            draw.text((x, y + opts.tile + 1), _fit(draw, caption, font, opts.tile), fill=(0, 0, 0), font=font)
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG", optimize=False)
    return out
