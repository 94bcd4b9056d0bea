"""What a file is, from its first bytes: format by magic number, declared size, text or binary.

Nothing here decodes pixels; `declared_size` reads only headers so a
decompression bomb can be refused before any decoder allocates memory.
"""
from __future__ import annotations

import functools
import struct

HEAD_BYTES = 64 * 1024  # enough for magic numbers, PNG IHDR, GIF header and most JPEG SOF markers

# Extensions and the sniffed formats they promise. An extension missing from
# this table says nothing (ext_mismatch is null for it).
EXT_FORMATS: dict[str, frozenset[str]] = {
    ".jpg": frozenset({"JPEG", "MPO"}), ".jpeg": frozenset({"JPEG", "MPO"}),
    ".jpe": frozenset({"JPEG", "MPO"}), ".jfif": frozenset({"JPEG"}),
    ".png": frozenset({"PNG"}), ".apng": frozenset({"PNG"}),
    ".gif": frozenset({"GIF"}), ".webp": frozenset({"WEBP"}),
    ".bmp": frozenset({"BMP"}), ".dib": frozenset({"BMP", "DIB"}),
    ".tif": frozenset({"TIFF"}), ".tiff": frozenset({"TIFF"}),
    ".ico": frozenset({"ICO"}), ".jp2": frozenset({"JPEG2000"}), ".j2k": frozenset({"JPEG2000"}),
    ".heic": frozenset({"HEIF"}), ".heif": frozenset({"HEIF"}), ".avif": frozenset({"AVIF"}),
    ".psd": frozenset({"PSD"}), ".svg": frozenset({"SVG"}), ".pdf": frozenset({"PDF"}),
    ".html": frozenset({"HTML"}), ".htm": frozenset({"HTML"}), ".txt": frozenset({"TEXT"}),
    ".xml": frozenset({"XML", "SVG"}), ".json": frozenset({"TEXT"}), ".zip": frozenset({"ZIP"}),
}

# Formats that are pictures but that Pillow here may not decode (-> status `unsupported`).
IMAGE_FORMATS = frozenset({
    "JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "DIB", "TIFF", "ICO", "JPEG2000", "HEIF", "AVIF",
    "PSD", "SVG",
})
# Formats that are certainly not pictures (-> status `not_an_image`).
NON_IMAGE_FORMATS = frozenset({"HTML", "XML", "TEXT", "PDF", "ZIP", "GZIP"})


@functools.cache
def register_optional_decoders() -> bool:
    """Let Pillow open HEIC/HEIF photos when pi-heif is installed (the `curate` extra has it).

    Called before decoding, so a scan's verdict does not depend on whether some
    other library (ultralytics does the same on import) happened to register it.
    Returns whether a HEIF decoder is available.
    """
    try:
        from pi_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def sniff_format(head: bytes) -> str | None:
    """Format name from the magic number (Pillow's names where Pillow has one), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 26:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] == b"\x00\x00\x01\x00":
        return "ICO"
    if head[:4] == b"8BPS":
        return "PSD"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51"):
        return "JPEG2000"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1"):
            return "HEIF"
        return None
    if head.startswith(b"%PDF"):
        return "PDF"
    if head[:4] == b"PK\x03\x04":
        return "ZIP"
    if head[:2] == b"\x1f\x8b":
        return "GZIP"
    return _sniff_text(head)


def _sniff_text(head: bytes) -> str | None:
    if not looks_like_text(head):
        return None
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<meta", b"<script")) \
            or b"<html" in text[:1024]:
        return "HTML"
    if b"<svg" in text[:2048]:
        return "SVG"
    if text.startswith(b"<?xml"):
        return "XML"
    return "TEXT"


def looks_like_text(head: bytes) -> bool:
    """True when the bytes decode as UTF-8 (or Latin-1 without control bytes) and hold no NULs."""
    sample = head[:8192]
    if not sample or b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 4:  # a multi-byte character cut by the sample's end
            return True
    controls = sum(b < 32 and b not in (9, 10, 12, 13) for b in sample)
    return controls / len(sample) < 0.01


def ext_mismatch(suffix: str, fmt: str | None) -> bool | None:
    """Whether the extension promises another format; None when either side says nothing."""
    want = EXT_FORMATS.get(suffix.lower())
    if want is None or fmt is None:
        return None
    return fmt not in want


def declared_size(head: bytes, fmt: str | None) -> tuple[int, int] | None:
    """(width, height) from the header alone, for the formats where that is cheap; else None."""
    try:
        if fmt == "PNG" and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        if fmt == "GIF":
            return struct.unpack("<HH", head[6:10])
        if fmt == "BMP":
            w, h = struct.unpack("<ii", head[18:26])
            return abs(w), abs(h)
        if fmt == "JPEG":
            return _jpeg_size(head)
        if fmt == "WEBP":
            return _webp_size(head)
    except struct.error:
        return None
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    i = 2
    n = len(head)
    while i + 4 <= n:
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", head[i + 2:i + 4])
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            h, w = struct.unpack(">HH", head[i + 5:i + 9])
            return w, h
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 + length
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(head[24:27], "little") + 1
        h = int.from_bytes(head[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L":
        b = head[21:25]
        bits = int.from_bytes(b, "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None
