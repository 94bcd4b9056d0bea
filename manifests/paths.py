"""Where a sample's pixels are: the original, its repaired copy, its crop; the cache folder.

Folders we fill with derived files beside a manifest (`cache/`, `pack/`) carry a `CACHEDIR.TAG`
(the cache directory tagging standard, so backup tools skip them too): that is how a scan knows to
leave them out, and how we know never to write into a user's folder of the same name.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from common.errors import UserError

CACHE_DIRNAME = "cache"
TAG_NAME = "CACHEDIR.TAG"
TAG_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
            "# motocurate: derived files (crops, repaired copies, packs); rebuilt on demand.\n")
# What such folders held before they were tagged (adopted, then tagged): the cache's kinds, packs.
_UNTAGGED = {
    CACHE_DIRNAME: lambda names: set(names) <= {"repaired", "crops", "review", "dedupe", "score", "fid", "pack"},
    "pack": lambda names: all(re.match(r"^\.?(pad-[a-z]+|resize|crop)-\d+(\.npy|\.json|\.lock|-png)(\..*)?$", n)
                              for n in names),
}


def is_ours(folder: str | Path) -> bool:
    """A folder of derived files we made: tagged, or an untagged `cache/`/`pack/` of an older
    version holding only what we write there."""
    folder = Path(folder)
    try:
        names = os.listdir(folder)
        if TAG_NAME in names:
            return "motocurate" in (folder / TAG_NAME).read_text(encoding="utf-8", errors="replace")
        if any(n.startswith(f".{TAG_NAME}.") for n in names):   # another process is tagging it right now
            return True
        legacy = _UNTAGGED.get(folder.name)
        return legacy is not None and legacy(os.listdir(folder)) and any(os.scandir(folder))
    except OSError:
        return False


_CLAIMED: set[str] = set()   # folders this process made or adopted (a stage claims its cache per file)


def claim_folder(folder: str | Path) -> Path:
    """Make (or adopt) a folder for derived files, tagged; refuse a user's folder of that name."""
    folder = Path(folder)
    if str(folder) in _CLAIMED and (folder / TAG_NAME).is_file():
        return folder
    if folder.exists() and not is_ours(folder):
        if not folder.is_dir():
            raise UserError(f"{folder}: exists and is not a folder; motocurate keeps its derived files there")
        if any(folder.iterdir()):
            raise UserError(f"{folder}: holds files motocurate did not write, and motocurate keeps its derived "
                            "files there; move the manifest (or -o) to another folder")
    folder.mkdir(parents=True, exist_ok=True)
    tag = folder / TAG_NAME
    if not tag.exists():
        from common.atomic import write_text_atomic

        write_text_atomic(tag, TAG_TEXT)
    _CLAIMED.add(str(folder))
    return folder


def is_within(path: str | Path, folder: str | Path) -> bool:
    """`path` is `folder` or lies below it, by real path (symlinks resolved)."""
    p, f = os.path.realpath(path), os.path.realpath(folder)
    return p == f or p.startswith(f.rstrip(os.sep) + os.sep)


def cache_dir(manifest_path: str | Path, kind: str) -> Path:
    """Content-addressed cache beside the manifest: `<folder>/cache/<kind>/`."""
    d = claim_folder(Path(manifest_path).resolve().parent / CACHE_DIRNAME) / kind
    d.mkdir(parents=True, exist_ok=True)
    return d


def cache_file(manifest_path: str | Path, kind: str, digest: str, suffix: str = ".png") -> Path:
    """`cache/<kind>/<aa>/<digest><suffix>`; the caller writes it atomically."""
    d = cache_dir(manifest_path, kind) / digest[:2]
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{digest}{suffix}"


def relative_to_manifest(manifest_path: str | Path, p: str | Path) -> str:
    return Path(p).resolve().relative_to(Path(manifest_path).resolve().parent).as_posix()


def present(v) -> bool:
    """A real value in a manifest cell: not None, NaN, pandas' NA or an empty string."""
    return v is not None and not (isinstance(v, float) and v != v) and str(v) not in ("", "<NA>")


def cell(v):
    """A manifest cell's value, None for a null (None or NaN; empty strings are kept)."""
    return None if v is None or (isinstance(v, float) and v != v) else v


def source_path(root: str | Path, row) -> Path:
    """The user's original file."""
    return Path(root) / row["path"]


def decoded_path(manifest_folder: str | Path, root: str | Path, row) -> Path:
    """The repaired copy where there is one, else the original."""
    rp = row.get("repaired_path") if hasattr(row, "get") else None
    if present(rp):
        return Path(manifest_folder) / rp
    return source_path(root, row)


def sample_image_path(manifest_folder: str | Path, root: str | Path, row) -> Path:
    """The pixels a downstream stage should use: crop, else repaired copy, else original."""
    cp = row.get("crop_path") if hasattr(row, "get") else None
    if present(cp):
        return Path(manifest_folder) / cp
    return decoded_path(manifest_folder, root, row)


REPORT_TITLE = "motocurate report"        # in every page's <title>: how a folder is known to be a report


def is_report_folder(folder: str | Path) -> bool:
    """A folder holding a page `curate report` wrote (scans skip such a `report/` beside the manifest)."""
    try:
        with open(Path(folder) / "index.html", "rb") as f:
            return f"<title>{REPORT_TITLE}".encode() in f.read(4096)
    except OSError:
        return False
