"""Photos in object storage: `curate run s3://bucket/photos -o work/` (or `curate scan URI`).

Any URI pyarrow's filesystems read (`s3://bucket/prefix`, `gs://...`, `hdfs://...`, `file:///...`;
options in the query, e.g. `s3://bucket/p?endpoint_override=host:9000&scheme=http&region=eu-west-1`,
credentials from the usual environment) is mirrored into the work folder's cache,
`cache/inputs/<name>-<hash of the URI>/`, keeping the objects' relative keys and their modification
times; then every stage works on that folder as on a local one, and the scan's history records the
URI. Fetching is per-file work on the current engine (on Ray, the cluster's workers fetch in
parallel into the shared work folder); it resumes: an object already there with the same size and
time is not fetched again, one gone from the bucket leaves the mirror (the scan then lists it as
missing, as for a deleted file). The bucket is only read, never written.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from functools import partial
from pathlib import Path, PurePosixPath

from common.errors import UserError
from manifests.paths import CACHE_DIRNAME

log = logging.getLogger(__name__)

INPUTS = "inputs"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_uri(spec) -> bool:
    return isinstance(spec, str) and bool(_URI.match(spec))


def _filesystem(uri: str):
    from pyarrow import fs

    try:
        return fs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:
        raise UserError(f"{uri}: cannot open ({str(exc).splitlines()[0]})") from None


def mirror_folder(uri: str, workdir: Path) -> Path:
    """Where `uri` is mirrored under `workdir` (the same folder for the same URI, options included)."""
    base = uri.split("?", 1)[0].rstrip("/")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", base.split("://", 1)[1])[-60:].strip("._") or "root"
    digest = hashlib.sha256(uri.encode()).hexdigest()[:8]
    return Path(workdir) / CACHE_DIRNAME / INPUTS / f"{name}-{digest}"


def _safe_relpath(key: str) -> str | None:
    """An object's key below the prefix as a relative path, or None where it cannot be one."""
    parts = PurePosixPath(key).parts
    if not parts or any(p in ("", ".", "..") for p in parts) or key.startswith("/"):
        return None
    return "/".join(parts)


def list_objects(uri: str) -> list[tuple[str, int, int]]:
    """(relative key, size, mtime in ns) of every object below `uri`, sorted."""
    from pyarrow import fs

    filesystem, base = _filesystem(uri)
    try:
        infos = filesystem.get_file_info(fs.FileSelector(base, recursive=True))
    except (OSError, ValueError) as exc:
        raise UserError(f"{uri}: cannot list ({str(exc).splitlines()[0]})") from None
    out, skipped = [], []
    for info in infos:
        if info.type != fs.FileType.File:
            continue
        rel = _safe_relpath(info.path[len(base):].lstrip("/"))
        if rel is None:
            skipped.append(info.path)
            continue
        mtime = info.mtime_ns if info.mtime_ns is not None else 0
        out.append((rel, int(info.size or 0), int(mtime)))
    if skipped:
        log.warning("%d object key(s) cannot be file names and are not fetched, e.g. %r", len(skipped), skipped[0])
    return sorted(out)


def fetch_chunk(items: list[tuple[str, int, int]], uri: str, dest: str) -> list[dict]:
    """Copy objects into `dest` (atomically, with the object's time); runs on a worker."""
    from common.atomic import atomic_path

    filesystem, base = _filesystem(uri)
    out = []
    for rel, size, mtime in items:
        target = Path(dest) / rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp, filesystem.open_input_stream(f"{base.rstrip('/')}/{rel}") as src, \
                    open(tmp, "wb") as f:
                while chunk := src.read(1 << 20):
                    f.write(chunk)
            os.utime(target, ns=(mtime, mtime))
            out.append({"path": rel, "error": None})
        except OSError as exc:
            out.append({"path": rel, "error": f"{type(exc).__name__}: {exc}"})
    return out


def _have(path: Path, size: int, mtime: int) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return st.st_size == size and st.st_mtime_ns == mtime


def mirror(uri: str, workdir: Path, *, workers: int = 1, progress: bool = True) -> Path:
    """Bring the mirror of `uri` up to date; returns its folder."""
    from . import engine

    dest = mirror_folder(uri, workdir)
    objects = list_objects(uri)
    if not objects:
        raise UserError(f"{uri}: no objects found there")
    wanted = {rel for rel, _, _ in objects}
    gone = 0
    if dest.is_dir():
        for p in sorted(dest.rglob("*")):
            if p.is_file() and p.relative_to(dest).as_posix() not in wanted:
                p.unlink()        # our copy of an object no longer in the bucket (temp files of a kill too)
                gone += 1
    todo = [o for o in objects if not _have(dest / o[0], o[1], o[2])]
    failed = []
    for chunk in engine.map_chunks(partial(fetch_chunk, uri=uri, dest=str(dest)), todo, workers=workers,
                                   chunk_size=16, progress=progress, desc="fetch", unit="file"):
        failed += [r for r in chunk if r["error"]]
    log.info("fetched %d of %d object(s) from %s (%d already here, %d gone)", len(todo) - len(failed),
             len(objects), uri, len(objects) - len(todo), gone)
    if failed:
        raise UserError(f"{uri}: {len(failed)} object(s) could not be fetched, e.g. {failed[0]['path']}: "
                        f"{failed[0]['error']}; run again to retry them")
    return dest
