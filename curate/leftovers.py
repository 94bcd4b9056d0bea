"""What killed writes leave behind: the temp files of `common.atomic` (`.<name>.<random><suffix>`)
that were never renamed into place. They are removed when a command takes the work folder's lock
(`curate.work_lock`): holding it says no other writer is using them.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from manifests.paths import CACHE_DIRNAME, is_ours

log = logging.getLogger(__name__)

# cache/ folders the curate stages write (pack/ and fid/ belong to commands that take no lock)
STAGE_FOLDERS = ("repaired", "crops", "repair", "detect", "score", "dedupe", "embed", "text", "review")


def is_leftover(name: str) -> bool:
    """A temp file of `common.atomic` (`.<name>.<random><suffix>`) or of an older version."""
    return name.startswith(".") and name.count(".") >= 2 and name != ".gitignore"


def sweep_leftovers(folder: Path, manifest_name: str | None = None) -> int:
    """Remove the temp files of `manifest_name` in `folder` (only that manifest's: the folder may be
    the user's) and those in the curate stages' cache folders. Returns how many were removed."""
    folder = Path(folder).resolve()
    candidates = []
    if manifest_name:
        mine = re.compile(rf"^\.{re.escape(manifest_name)}\.[a-z0-9_]{{8}}\.tmp$")
        candidates = [p for p in folder.glob(f".{manifest_name}.*") if mine.match(p.name) and p.is_file()]
    cache = folder / CACHE_DIRNAME
    if cache.is_dir() and is_ours(cache):
        for sub in STAGE_FOLDERS:
            top = cache / sub
            if top.is_dir():
                candidates += [p for p in top.rglob(".*") if p.is_file() and is_leftover(p.name)]
    removed = 0
    for p in candidates:
        try:
            p.unlink()
            removed += 1
        except OSError:
            pass
    if removed:
        log.info("removed %d temp file(s) left by an interrupted run", removed)
    return removed
