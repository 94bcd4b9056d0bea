"""Stable identifiers derived from content."""
import hashlib
from pathlib import Path

CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sample_id(sha256: str, relpath: str, crop_index: int = 0) -> str:
    """`<content sha256 prefix>-<path hash>-<crop index>`.

    The content hash makes the id follow the bytes; the path hash keeps two
    byte-identical files at different paths as two rows (dedupe flags one of
    them, nothing is merged silently); the crop index separates several
    motorbikes cut from one photo.
    """
    path_hash = hashlib.sha256(relpath.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{sha256[:16]}-{path_hash}-{crop_index}"
