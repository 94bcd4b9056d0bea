"""Output paths checked before any work: a folder whose parent is a file, or a file path that names a
folder, is one line naming the flag, not a traceback from deep inside (or after) the work."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError  # light: no pandas/pyarrow (the trainer imports this)


def _writable_base(path: Path, folder: Path, what: str) -> None:
    """The nearest existing one of `folder` and its ancestors must be a writable folder."""
    base = next(p for p in (folder, *folder.parents) if p.exists())
    if not base.is_dir():
        raise UserError(f"{what} {path}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: {base} is not writable")


def check_out_dir(folder: str | os.PathLike, what: str) -> Path:
    """`folder` is an existing folder, or can be made (its nearest existing ancestor is a writable folder)."""
    folder = Path(folder)
    if folder.is_symlink() and not folder.exists():
        raise UserError(f"{what} {folder}: a broken symbolic link (to {os.readlink(folder)})")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{what} {folder}: exists and is not a folder")
    _writable_base(folder, folder.absolute(), what)
    return folder


def check_out_file(path: str | os.PathLike, what: str) -> Path:
    """`path` can be written as a file: it is not a folder, and its folder exists or can be made."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path}: is a folder; give a file name")
    _writable_base(path, path.absolute().parent, what)
    return path
