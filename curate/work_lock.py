"""One writer per work folder: a second `curate run` (or stage) on the same folder says who holds it
and stops.

The lock is an advisory `flock` on `cache/run.lock` (our folder, skipped by scans) holding the
holder's pid, command line and start time. The kernel releases it when the holder exits or is
killed, so the lock of a dead process is taken over by the next run without any cleanup.

`curate run` holds it for the work folder; every stage that rewrites a manifest holds it for the
folder the manifest lives in (`@locks_manifest`). Within one process the lock is re-entrant, so the
stages `curate run` calls take the lock it already holds.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import functools
import inspect
import json
import logging
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from common.errors import UserError
from manifests.paths import CACHE_DIRNAME, claim_folder

from .leftovers import sweep_leftovers

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
_held: dict[str, int] = {}          # lock path -> depth, for the locks this process holds
_guard = threading.Lock()


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
        return f"pid {info.get('pid')}, `{info.get('command')}`, since {info.get('since')}"
    except (OSError, ValueError):
        return "holder unknown"


@contextmanager
def work_lock(cache_folder: Path, workdir: Path, *, named: str | None = None, manifest_name: str | None = None):
    """Hold the work folder's lock for the duration of the block; a UserError when another holds it.
    Taking it removes what killed writes left there (`curate.leftovers`; of `manifest_name` beside it)."""
    path = Path(cache_folder) / LOCK_NAME
    key = str(path.resolve())
    with _guard:
        if _held.get(key):
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                _held[key] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{named or f'-o {workdir}'}: another curate run is working in this folder ({_holder(fd)}); "
                            "wait for it to finish, or stop it, then run again") from None
        info = {"pid": os.getpid(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
                "since": _dt.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(info).encode("utf-8"))
        with _guard:
            _held[key] = 1
        try:
            sweep_leftovers(Path(workdir), manifest_name)
            yield
        finally:
            with _guard:
                _held.pop(key, None)
    finally:
        os.close(fd)   # releases the lock


@contextmanager
def manifest_lock(manifest_path):
    """The lock of the work folder `manifest_path` lives in (the one `curate run` holds there).

    Not locked: a manifest that does not exist yet in a folder that does not exist (nothing to
    protect, and the stage's own error, no such file, comes first), and a folder whose `cache/` is
    the user's own (we never write into it; the stages that need a cache refuse it themselves)."""
    manifest_path = Path(manifest_path)
    folder = manifest_path.resolve().parent
    if not manifest_path.exists() and not folder.is_dir():
        yield
        return
    try:
        cache = claim_folder(folder / CACHE_DIRNAME)
    except UserError:
        log.warning("%s: not locked (its cache/ is not motocurate's); run one command at a time there", folder)
        yield
        return
    with work_lock(cache, folder, named=str(folder), manifest_name=manifest_path.name):
        yield


def locks_manifest(arg: str = "manifest_path"):
    """Decorator for a stage that rewrites a manifest: it holds `manifest_lock` of its `arg` while it runs."""
    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args, **kwargs):
            with manifest_lock(signature.bind(*args, **kwargs).arguments[arg]):
                return fn(*args, **kwargs)
        return locked
    return decorate
