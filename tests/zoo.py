"""A zoo of nasty files, built from small generated images, with what is expected of each.

`make_zoo(dest)` writes the files under `dest` and returns `{relpath: expectation}`,
where an expectation has at least `kind`, `status` (what `curate scan` must say) and
`repair_action` (what `curate repair` must do), and sometimes `format`,
`ext_mismatch`, `mode`, `n_frames`, `exif_orientation`, `frame_index`, `error_contains`.

Paths that are not files (a FIFO, a symlink loop, a broken symlink) still appear,
because the scan must list them as `unreadable`. `locked.jpg` has mode 000: it is
`unreadable` for a normal user but readable by root (which bypasses permissions),
so its expected status depends on who runs the test; `tests/test_scan.py` checks the
permission case honestly by scanning with the DAC-override capabilities dropped.
"""
from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageDraw, ImageFilter

SEED = 1234


def picture(w: int = 160, h: int = 120, seed: int = SEED) -> Image.Image:
    """A colourful, detailed RGB test picture (shapes on a gradient, with noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1),
                     np.full_like(xx, 128, dtype=float)], -1)
    im = Image.fromarray(base.astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(5, w // 2)), y0 + int(rng.integers(5, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)((x0, y0, x1, y1), fill=colour)
    for _ in range(20):
        pts = [int(v) for v in (rng.integers(0, w), rng.integers(0, h), rng.integers(0, w),
                                rng.integers(0, h))]
        d.line(pts, fill=tuple(int(c) for c in rng.integers(0, 256, 3)), width=2)
    arr = np.asarray(im).astype(int) + rng.integers(-12, 13, (h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def _bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def swapped_profile() -> bytes:
    """An RGB ICC profile that is sRGB with the red and blue primaries swapped (not sRGB).

    Converting a picture tagged with it to sRGB turns red into blue, which the repair
    test can see.
    """
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    n = struct.unpack(">I", data[128:132])[0]
    entries = {}
    for i in range(n):
        at = 132 + 12 * i
        sig, off, size = struct.unpack(">4sII", data[at:at + 12])
        entries[sig] = (at, off, size)
    (ra, roff, rsize), (ba, boff, bsize) = entries[b"rXYZ"], entries[b"bXYZ"]
    data[ra + 4:ra + 12] = struct.pack(">II", boff, bsize)
    data[ba + 4:ba + 12] = struct.pack(">II", roff, rsize)
    desc_at, desc_off, desc_size = entries[b"desc"]
    desc = bytes(data[desc_off:desc_off + desc_size])
    old = "sRGB".encode("utf-16-be")
    new = "BGRx".encode("utf-16-be")
    data[desc_off:desc_off + desc_size] = desc.replace(old, new)
    data[84:100] = bytes(16)  # profile ID (MD5) unset
    return bytes(data)


def _bomb_png(w: int, h: int) -> bytes:
    """A tiny PNG whose header declares w x h pixels (the data does not follow)."""
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _corrupt_png() -> bytes:
    good = _bytes(picture(64, 48, seed=7), "PNG")
    at = good.index(b"IDAT") + 4
    garbage = bytes(np.random.default_rng(3).integers(0, 256, 200, dtype=np.uint8))
    return good[:at + 2] + garbage + good[at + 2 + len(garbage):]


def heif_decoder() -> bool:
    """True when pi-heif is installed (then `curate scan` decodes HEIC photos)."""
    from curate.sniff import register_optional_decoders

    return register_optional_decoders()


def can_bypass_permissions() -> bool:
    """True when this process reads files whatever their mode (root with CAP_DAC_OVERRIDE)."""
    import tempfile

    fd, probe = tempfile.mkstemp(prefix="zoo-perm-")
    os.close(fd)
    try:
        os.chmod(probe, 0)
        try:
            with open(probe, "rb"):
                return True
        except PermissionError:
            return False
    finally:
        os.unlink(probe)


def make_zoo(dest: str | os.PathLike, *, fifo: bool = True) -> dict[str, dict]:
    """Write the zoo under `dest` (created); return {relpath: expectation}."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    exp: dict[str, dict] = {}

    def put(rel: str, data: bytes, **expect) -> Path:
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        exp[rel] = expect
        return p

    pic = picture()
    jpeg = _bytes(pic, "JPEG", quality=92)
    png = _bytes(pic, "PNG")

    # --- fine files (repair: none) ---
    put("ok.jpg", jpeg, kind="good JPEG", status="ok", format="JPEG", ext_mismatch=False,
        mode="RGB", repair_action="none")
    put("tiny_1x1.png", _bytes(Image.new("RGB", (1, 1), (200, 30, 40)), "PNG"),
        kind="1x1 image", status="ok", format="PNG", mode="RGB", repair_action="none")
    put("webp_named.jpg", _bytes(picture(seed=2), "WEBP", quality=90), kind="WebP named .jpg",
        status="ok", format="WEBP", ext_mismatch=True, repair_action="none")
    put("with space.jpg", _bytes(picture(seed=3), "JPEG"), kind="name with spaces", status="ok",
        repair_action="none")
    put("ünïcødé 写真.jpg", _bytes(picture(seed=4), "JPEG"), kind="unicode name", status="ok",
        repair_action="none")
    put("-leading-dash.jpg", _bytes(picture(seed=5), "JPEG"), kind="name starting with -",
        status="ok", repair_action="none")
    put("nested/deeper/deepest/photo.png", _bytes(picture(seed=6), "PNG"), kind="nested folders",
        status="ok", format="PNG", repair_action="none")

    # --- not images / unreadable (repair: skipped) ---
    put("empty.jpg", b"", kind="zero-byte file", status="empty", repair_action="skipped")
    put("page.jpg", b"<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head>"
        b"<body><h1>Forbidden</h1></body></html>\n", kind="HTML saved as .jpg",
        status="not_an_image", format="HTML", ext_mismatch=True, repair_action="skipped")
    put("notes.txt", "motorbike notes\nnothing to see\n".encode(), kind="text file",
        status="not_an_image", format="TEXT", ext_mismatch=False, repair_action="skipped")
    put("blob.bin", bytes(np.random.default_rng(9).integers(0, 256, 4096, dtype=np.uint8)),
        kind="random bytes", status="not_an_image", repair_action="skipped")
    if heif_decoder():  # a HEIF header and no image data: broken for a real decoder
        put("photo.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(256),
            kind="HEIC header without data", status="corrupt", format="HEIF", repair_action="unrecoverable")
    else:
        put("photo.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(256),
            kind="HEIC (no decoder here)", status="unsupported", format="HEIF", repair_action="skipped")
    put("bomb.png", _bomb_png(100_000, 100_000), kind="decompression bomb", status="too_large",
        format="PNG", repair_action="skipped", error_contains="100000x100000")

    # --- broken (repair: recovered or unrecoverable) ---
    put("truncated_half.jpg", jpeg[:len(jpeg) // 2], kind="JPEG truncated at 50%",
        status="truncated", format="JPEG", repair_action="recovered")
    put("truncated_early.jpg", jpeg[:len(jpeg) // 10], kind="JPEG truncated at 10%",
        status="truncated", format="JPEG", repair_action="unrecoverable")
    put("truncated.png", png[:len(png) // 2], kind="truncated PNG", status="truncated",
        format="PNG", repair_action="recovered")
    put("corrupt.png", _corrupt_png(), kind="PNG with garbage image data", status="corrupt",
        format="PNG", repair_action="unrecoverable")

    # --- conversions (repair: converted) ---
    put("cmyk.jpg", _bytes(Image.new("RGB", (64, 48), (230, 20, 20)).convert("CMYK"), "JPEG"),
        kind="CMYK JPEG", status="ok", mode="CMYK", repair_action="converted")
    grey16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    put("grey16.png", _bytes(Image.fromarray(grey16), "PNG"), kind="16-bit greyscale PNG",
        status="ok", mode="I;16", repair_action="converted")
    pal = pic.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    put("palette_transparent.png", _bytes(pal, "PNG", transparency=0),
        kind="palette PNG with transparency", status="ok", mode="P", repair_action="converted")
    rgba = pic.convert("RGBA")
    alpha = Image.new("L", pic.size, 0)
    ImageDraw.Draw(alpha).ellipse((20, 10, 140, 110), fill=255)
    rgba.putalpha(alpha)
    put("rgba.png", _bytes(rgba, "PNG"), kind="RGBA PNG", status="ok", mode="RGBA",
        repair_action="converted")
    put("grey.jpg", _bytes(pic.convert("L"), "JPEG"), kind="greyscale JPEG", status="ok",
        mode="L", repair_action="converted")
    exif = Image.Exif()
    exif[0x0112] = 6
    put("rotated.jpg", _bytes(picture(160, 120, seed=8), "JPEG", exif=exif.tobytes()),
        kind="EXIF-rotated JPEG (orientation 6)", status="ok", exif_orientation=6,
        repair_action="converted")
    put("icc_swapped.jpg", _bytes(Image.new("RGB", (64, 48), (220, 30, 30)), "JPEG",
                                  icc_profile=swapped_profile()),
        kind="JPEG with a non-sRGB ICC profile", status="ok", mode="RGB", repair_action="converted")
    put("single.gif", _bytes(picture(seed=10).convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
        kind="single-frame GIF", status="ok", format="GIF", n_frames=1, repair_action="converted")

    # --- animations (repair: best_frame; frame 1 is the sharp, colourful one) ---
    sharp = picture(seed=11)
    blurred = sharp.filter(ImageFilter.GaussianBlur(4))
    blank = Image.new("RGB", sharp.size, (255, 255, 255))
    put("anim_blank_first.gif", _bytes(blank, "GIF", save_all=True,
                                       append_images=[sharp, blurred], duration=100, loop=0),
        kind="animated GIF, frame 0 blank", status="ok", format="GIF", n_frames=3,
        repair_action="best_frame", frame_index=1)
    put("anim.webp", _bytes(blurred, "WEBP", save_all=True, append_images=[sharp, blank],
                            duration=100, lossless=True),
        kind="animated WebP", status="ok", format="WEBP", n_frames=3, repair_action="best_frame",
        frame_index=1)
    put("anim.png", _bytes(Image.new("RGB", sharp.size, (0, 0, 0)), "PNG", save_all=True,
                           append_images=[sharp, sharp.convert("L").convert("RGB")],
                           duration=100),
        kind="APNG, frame 0 black, frame 2 grey", status="ok", format="PNG", n_frames=3,
        repair_action="best_frame", frame_index=1)

    # --- permissions and links ---
    locked = put("locked.jpg", _bytes(picture(seed=12), "JPEG"), kind="unreadable (mode 000)",
                 status="unreadable", repair_action="skipped", error_contains="ermission")
    os.chmod(locked, 0)
    if can_bypass_permissions():
        exp["locked.jpg"] = {"kind": "mode 000, but this process bypasses permissions (root)",
                             "status": "ok", "repair_action": "none"}
    os.symlink("..", dest / "nested" / "loop")
    exp["nested/loop"] = {"kind": "symlink loop", "status": "unreadable",
                          "repair_action": "skipped", "error_contains": "loop"}
    os.symlink("a", dest / "self_a")
    os.symlink("self_a", dest / "a")
    exp["a"] = {"kind": "symlink cycle between files", "status": "unreadable",
                "repair_action": "skipped", "error_contains": "loop"}
    exp["self_a"] = dict(exp["a"])
    os.symlink("does-not-exist.jpg", dest / "broken_link.jpg")
    exp["broken_link.jpg"] = {"kind": "broken symlink", "status": "unreadable",
                              "repair_action": "skipped", "error_contains": "broken symlink"}
    os.symlink("ok.jpg", dest / "link_to_ok.jpg")
    exp["link_to_ok.jpg"] = {"kind": "symlink to a file", "status": "ok", "repair_action": "none"}
    if fifo:
        os.mkfifo(dest / "pipe.jpg")
        exp["pipe.jpg"] = {"kind": "FIFO named .jpg", "status": "unreadable",
                           "repair_action": "skipped", "error_contains": "FIFO"}
    return exp
