"""One writer per work folder: a second `curate run` on the same `-o` says who holds it and stops.

The lock is an advisory `flock` on `cache/run.lock` (our folder, skipped by scans) holding the
holder's pid, command line and start time. The kernel releases it when the holder exits or is
killed, so the lock of a dead process is taken over by the next run without any cleanup.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from manifests.errors import UserError

LOCK_NAME = "run.lock"


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
        return f"pid {info.get('pid')}, `{info.get('command')}`, since {info.get('since')}"
    except (OSError, ValueError):
        return "holder unknown"


@contextmanager
def work_lock(cache_folder: Path, workdir: Path):
    """Hold the work folder's lock for the duration of the block; a UserError when another holds it."""
    path = Path(cache_folder) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"-o {workdir}: another curate run is working in this folder ({_holder(fd)}); "
                            "wait for it to finish, or stop it, then run again") from None
        info = {"pid": os.getpid(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
                "since": _dt.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(info).encode("utf-8"))
        yield
    finally:
        os.close(fd)   # releases the lock
