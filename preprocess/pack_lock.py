"""One packer per pack: a POSIX advisory lock beside it that two processes (the ranks of a
distributed trainer, say) never both hold."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path


def lock_path(folder: Path, stem: str) -> Path:
    return folder / f"{stem}.lock"


@contextlib.contextmanager
def locked(folder: Path, stem: str):
    """Hold `<folder>/<stem>.lock` (POSIX advisory lock) so that two processes packing the same
    pack, e.g. the ranks of a distributed trainer, build it once and never see it half replaced.

    The lock file is removed on release. That is safe because the holder unlinks it *before*
    unlocking, and a process that gets the lock checks that the file it locked is still the one at
    the path (same inode); if not (it was unlinked meanwhile), it retries with the path's new file.
    So two processes can never both hold a lock: at most one file is at the path at any time.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = lock_path(folder, stem)
    while True:
        f = open(path, "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            f.close()
            raise
        if same:
            break
        f.close()  # released by its holder and removed: lock the file now at the path
    try:
        yield
    finally:
        try:
            path.unlink(missing_ok=True)
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
