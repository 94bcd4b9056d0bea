"""Where a sample's pixels are: the original, its repaired copy, its crop; the cache folder."""
from __future__ import annotations

from pathlib import Path

CACHE_DIRNAME = "cache"


def cache_dir(manifest_path: str | Path, kind: str) -> Path:
    """Content-addressed cache beside the manifest: `<folder>/cache/<kind>/`."""
    d = Path(manifest_path).resolve().parent / CACHE_DIRNAME / kind
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
