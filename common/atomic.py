"""Atomic file writes: a temp file in the target's folder, then `os.replace`.

Standard library only (the GAN trainer and the pack loader import it on machines
without pandas or pyarrow). A reader sees the old file or the new one, never half
of one; a failed write leaves the old file as it was and no temp file behind. A write that runs
out of disk space is a one-line `DiskFullError` (a UserError) saying so.

    with atomic_path(out, suffix=".png") as tmp:   # suffix for libraries that infer the format
        fig.savefig(tmp)
    write_bytes_atomic(path, data)
    write_text_atomic(path, text)
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import UserError

__all__ = ["DiskFullError", "atomic_path", "fsync_file", "temp_beside", "write_bytes_atomic", "write_text_atomic"]


class DiskFullError(UserError):
    """A write that ran out of space: the previous file is intact, no temp file is left."""


def _is_disk_full(exc: BaseException | None) -> bool:
    """ENOSPC/EDQUOT anywhere in the exception's chain (torch wraps it in a RuntimeError)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and (exc.errno in (errno.ENOSPC, errno.EDQUOT)
                                         # pyarrow raises OSError without errno, with the C library's words
                                         or "no space left on device" in str(exc).lower()):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _disk_full(path: Path) -> DiskFullError:
    try:
        free = f"{shutil.disk_usage(path.parent).free / 1e6:.1f} MB free"
    except OSError:
        free = "free space unknown"
    old = "is unchanged" if path.exists() else "was not written"
    return DiskFullError(f"cannot write {path}: no space left on the device ({free} in {path.parent}); "
                         f"{path.name} {old}; free some space and run again (finished work is kept)")


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


# Files we write get the permissions a plain `open()` would give them (0o666 less the umask), not
# mkstemp's private 0o600: a report or manifest is meant to be read by others. Read once at import.
DEFAULT_MODE = 0o666 & ~_umask()


def temp_beside(path: str | os.PathLike, *, suffix: str = ".tmp", prefix: str | None = None,
                mode: int | None = None) -> Path:
    """Create an empty temp file in `path`'s folder (made if needed) and return its path.

    Named `<prefix><random><suffix>`, `prefix` defaulting to `.<name of path>.`; `mode`
    (default: 0o666 less the umask, as `open()` would give) is applied with `os.chmod`, since
    mkstemp makes the file private. The caller renames or removes it; `atomic_path` does both.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}." if prefix is None else prefix, suffix=suffix,
                               dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        os.chmod(tmp, DEFAULT_MODE if mode is None else mode)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp", *, prefix: str | None = None,
                mode: int | None = None, fsync: bool = False) -> Iterator[Path]:
    """Yield a temp path beside `path` to write; on success `os.replace` it onto `path`.

    On any exception (KeyboardInterrupt included) the temp file is removed and `path`
    is left as it was. `fsync=True` flushes the temp file to disk before the rename.
    See `temp_beside` for `suffix`, `prefix` and `mode`.
    """
    path = Path(path)
    try:
        tmp = temp_beside(path, suffix=suffix, prefix=prefix, mode=mode)
    except OSError as exc:
        if _is_disk_full(exc):
            raise _disk_full(path) from None
        raise
    try:
        yield tmp
        if fsync:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if _is_disk_full(exc):
            raise _disk_full(path) from None
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, **kw) -> Path:
    """Write `data` to `path` atomically; keywords as for `atomic_path`."""
    path = Path(path)
    with atomic_path(path, **kw) as tmp:
        tmp.write_bytes(data)
    return path


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8", **kw) -> Path:
    """Write `text` to `path` atomically; keywords as for `atomic_path`."""
    path = Path(path)
    with atomic_path(path, **kw) as tmp:
        tmp.write_text(text, encoding=encoding)
    return path
