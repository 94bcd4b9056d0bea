"""Inspect one file for `curate scan`: hash, sniff, open, decode, and give it a status.

Runs in worker processes, so it imports only Pillow, numpy and the standard
library (not `manifests`, whose pandas import would slow every worker's start).
Every outcome is a row (a dict of the scan columns but `sample_id`, which the
caller adds with `content_digest`); nothing raises for a bad file. Status
values are `manifests.schema.core.SCAN_STATUSES`.
"""
from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings

from PIL import Image

from .decoded import dct_scale, draft
from .normalise import ORIENTATION_TAG, icc_description
from .sniff import (HEAD_BYTES, IMAGE_FORMATS, NON_IMAGE_FORMATS, declared_size, ext_mismatch,
                    register_optional_decoders,
                    sniff_format)

CHUNK = 1 << 20
IN_MEMORY_LIMIT = 256 << 20  # files up to this size are read once and decoded from memory


def path_digest(relpath: str) -> str:
    """Stands in for the content hash in `sample_id` of a file that could not be read."""
    return hashlib.sha256(b"path:" + relpath.encode("utf-8", "surrogateescape")).hexdigest()


def content_digest(row: dict) -> str:
    """What `sample_id` hashes for this row: its sha256, or `path_digest` without one."""
    return row.get("sha256") or path_digest(row["path"])


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def _row(relpath: str, status: str, error: str | None = None, *, sha: str | None = None,
         size: int | None = None, mtime_ns: int | None = None, **extra) -> dict:
    row = {
        "path": relpath, "crop_index": 0, "status": status, "error": error,
        "size_bytes": size, "mtime_ns": mtime_ns, "sha256": sha,
        "format": None, "ext_mismatch": None, "width": None, "height": None, "mode": None,
        "n_frames": None, "exif_orientation": None, "icc_profile": None,
    }
    row.update(extra)
    return row


def _read(path: str, size: int) -> tuple[str, bytes | None]:
    """sha256 of the file, and its bytes when it is small enough to keep in memory."""
    h = hashlib.sha256()
    keep = size <= IN_MEMORY_LIMIT
    parts = []
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
            if keep:
                parts.append(block)
    return h.hexdigest(), (b"".join(parts) if keep else None)


def _read_head(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(HEAD_BYTES)


def _failure_status(exc: BaseException) -> str:
    text = str(exc).lower()
    if isinstance(exc, EOFError) or "truncated" in text or "premature end" in text:
        return "truncated"
    return "corrupt"


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _pillow_formats() -> set[str]:
    Image.init()
    return set(Image.OPEN)


def probe_file(root: str, relpath: str, problem: str | None = None, *,
               max_pixels: int = 89_478_485, known_sha: str | None = None,
               problem_status: str = "unreadable") -> dict:
    """The scan row of `root/relpath`. `problem` (from the walk) makes it `problem_status`
    (`unreadable`, `outside_folder`) directly, without opening the file.

    With `known_sha`, a file whose content hashes to it is not decoded again: the
    result is `{"path": relpath, "unchanged": True, "mtime_ns": ...}`.
    """
    path = os.path.join(root, relpath)
    if problem is not None:
        try:
            lst = os.lstat(path)
            size, mtime = lst.st_size, lst.st_mtime_ns
        except OSError:
            size = mtime = None
        return _row(relpath, problem_status, problem, size=size, mtime_ns=mtime)
    try:
        st = os.stat(path)
    except OSError as exc:
        return _row(relpath, "unreadable", f"cannot stat: {exc.strerror or exc}")
    size, mtime = st.st_size, st.st_mtime_ns
    if not stat.S_ISREG(st.st_mode):
        return _row(relpath, "unreadable", f"{_kind(st.st_mode)}, not a file; not opened",
                    size=None, mtime_ns=mtime)
    suffix = os.path.splitext(relpath)[1]
    try:
        sha, data = _read(path, size)
    except OSError as exc:
        return _row(relpath, "unreadable", f"cannot read: {exc.strerror or exc}",
                    size=size, mtime_ns=mtime)
    if known_sha is not None and sha == known_sha:
        return {"path": relpath, "unchanged": True, "mtime_ns": mtime}
    size = len(data) if data is not None else size  # what was hashed
    common = {"sha": sha, "size": size, "mtime_ns": mtime}
    if size == 0:
        return _row(relpath, "empty", "zero-byte file", **common)
    head = data[:HEAD_BYTES] if data is not None else _read_head(path)
    fmt = sniff_format(head)
    common["format"] = fmt
    common["ext_mismatch"] = ext_mismatch(suffix, fmt)
    declared = declared_size(head, fmt)
    if declared and declared[0] * declared[1] > max_pixels:
        w, h = declared
        return _row(relpath, "too_large",
                    f"declared size {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
                    "(decompression bomb?); not decoded", width=w, height=h, **common)
    return _open_and_decode(relpath, io.BytesIO(data) if data is not None else path, fmt,
                            suffix, max_pixels, common)


def _open_and_decode(relpath, source, fmt, suffix, max_pixels, common) -> dict:
    register_optional_decoders()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bomb warnings, odd EXIF, palette transparency
        try:
            im = Image.open(source)
        except Image.DecompressionBombError as exc:
            return _row(relpath, "too_large", _error_text(exc), **common)
        except Image.UnidentifiedImageError:
            if fmt is None or fmt in NON_IMAGE_FORMATS:
                what = f"content is {fmt}" if fmt else "content not recognised as an image format"
                return _row(relpath, "not_an_image", what, **common)
            if fmt in IMAGE_FORMATS and fmt not in _pillow_formats():
                return _row(relpath, "unsupported", f"no decoder for {fmt} images here", **common)
            return _row(relpath, "corrupt", f"{fmt} signature, but Pillow cannot identify the file",
                        **common)
        except Exception as exc:  # noqa: BLE001 - any decoder failure is this file's status
            return _row(relpath, _failure_status(exc), _error_text(exc), **common)
        with im:
            fmt = im.format or fmt
            common["format"] = fmt
            common["ext_mismatch"] = ext_mismatch(suffix, fmt)
            w, h = im.size
            info = {"width": w, "height": h, "mode": im.mode}
            if w * h > max_pixels:
                return _row(relpath, "too_large", f"size {w}x{h} = {w * h} pixels exceeds the "
                            f"limit of {max_pixels}; not decoded", **info, **common)
            if fmt == "JPEG":
                # the whole entropy-coded stream is still read and checked (a cut or corrupt one
                # fails as at full size), but the pixels come out at the smallest DCT scale: ~2x faster
                draft(im, dct_scale((w, h), 1))
            try:
                im.load()  # first: PNG's getexif() would load (and swallow a decoder error)
            except Exception as exc:  # noqa: BLE001 - any decoder failure is this file's status
                return _row(relpath, _failure_status(exc), _error_text(exc), **info, **common)
            try:
                orientation = im.getexif().get(ORIENTATION_TAG)
            except Exception:  # noqa: BLE001 - a broken EXIF block does not spoil the pixels
                orientation = None
            info["exif_orientation"] = orientation if isinstance(orientation, int) else None
            info["icc_profile"] = icc_description(im.info.get("icc_profile"))
            try:
                info["n_frames"] = int(getattr(im, "n_frames", 1))
            except Exception as exc:  # noqa: BLE001 - an animation cut short after frame 0
                return _row(relpath, _failure_status(exc), f"frame 0 decodes, later frames fail: "
                            f"{_error_text(exc)}", **info, **common)
    return _row(relpath, "ok", None, **info, **common)


def probe_many(items: list[tuple], *, root: str, max_pixels: int) -> list[dict]:
    """Probe a chunk of (relpath, problem, known_sha[, problem_status]) items: the unit of work sent
    to a process."""
    return [probe_file(root, it[0], it[1], max_pixels=max_pixels, known_sha=it[2],
                       problem_status=it[3] if len(it) > 3 else "unreadable")
            for it in items]
