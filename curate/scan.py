"""`curate scan`: inventory every file under a folder into the manifest.

One row per file, nothing skipped: status from `manifests.schema.core.SCAN_STATUSES`
with the error text when not ok. Decisions worth knowing:

- Content identity: `sample_id = manifests.sample_id(sha256, relpath, 0)`. A file that
  cannot be read has no content hash; its id uses `sha256(b"path:" + relpath)` instead
  (`curate.probe.path_digest`) and its `sha256` column is null.
- Resume: a rescan reuses the row of a file whose size and mtime are unchanged (with
  `rehash=True` the file is also hashed and reused only if its sha256 matches). Rows
  that were `unreadable` are always looked at again, and every file is re-probed (with a
  warning) when an option a status depends on (`ScanOptions.verdict_params`: max_pixels)
  differs from the one the rows were scanned with. While scanning, the manifest is
  rewritten atomically every `checkpoint_every` files or `checkpoint_seconds`, so a
  killed scan resumes where it stopped.
- Files gone since the last scan keep their row (and their sample_id, so later stages'
  columns stay attached) with status `unreadable` and error "missing since last scan
  (was <status>)"; if the file comes back it is scanned again.
- Other stages' columns survive a rescan for every row whose sample_id is unchanged
  (same content at the same path) and whose status is unchanged (a file that was, say,
  too_large and is ok under a new limit has them cleared, so repair and detect redo it);
  extra rows added by `detect` (crop_index > 0) are kept while their file is unchanged
  and dropped (with a log line) when it changed.
- An empty folder (no entries at all) is an error, unless an earlier manifest exists:
  it is almost always a wrong path.
- When the walk reaches the manifest's folder (the root itself, a subfolder, or through a
  symlink: real paths are compared), only our own outputs there are left out: the
  manifest and its temporary files, `cache/`, `report/` when it holds our report, and
  other manifests (clean.parquet, ...) with their temporary files. Every other file in
  that folder gets a row. What was left out is listed in the write's parameters (`excluded`).
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import pyarrow as pa

from manifests import is_manifest, read_manifest, sample_id, write_manifest
from common.errors import UserError
from manifests.arrays import build
from manifests.io import Manifest
from manifests.paths import cell, is_ours, is_report_folder
from manifests.schema import core

from common.pool import resolve_workers
from .probe import content_digest, probe_many
from .remote import is_uri
from .row_stage import pooled, run_chunks
from . import engine
from .work_lock import manifest_lock
from .walk import Entry, walk_files

log = logging.getLogger(__name__)

CORE_COLUMNS = [f.name for f in core.FIELDS]
_TYPES = {f.name: f.type for f in core.FIELDS}
MISSING = "missing since last scan"


DEFAULT_MAX_PIXELS = 89_478_485      # Pillow's decompression-bomb limit


@dataclass(frozen=True)
class ScanOptions:
    """Options of `curate scan` (the CLI's defaults come from here)."""

    max_pixels: int | None = None     # declared width*height above this -> too_large; None: the last
                                      # scan's limit, else DEFAULT_MAX_PIXELS (see `with_previous`)
    rehash: bool = False              # on a rescan, hash unchanged (size+mtime) files and compare sha256
    checkpoint_every: int = 500       # rewrite the manifest after this many files ...
    checkpoint_seconds: float = 60.0  # ... or this many seconds, whichever comes first
    chunk_size: int = 16              # files per task sent to a worker process
    follow_links: bool | None = None  # follow symlinks that lead outside the folder (else: a row with status
                                      # outside_folder); None: as the last scan, else False

    def with_previous(self, previous: Manifest | None) -> "ScanOptions":
        """Unset options filled from the manifest's last scan (a limit set once stays), else defaults."""
        last = (previous.stage_params("scan") or {}) if previous is not None else {}
        out = self
        if out.max_pixels is None:
            out = replace(out, max_pixels=last.get("max_pixels") or DEFAULT_MAX_PIXELS)
        if out.follow_links is None:
            out = replace(out, follow_links=bool(last.get("follow_links", False)))
        return out

    def verdict_params(self) -> dict:
        """The options a row's status depends on: a rescan with other values re-probes every file."""
        return {"max_pixels": self.max_pixels}

    def check(self) -> None:
        if self.max_pixels is not None and self.max_pixels < 1:
            raise UserError(f"--max-pixels must be at least 1 (got {self.max_pixels})")
        if self.checkpoint_every < 1:
            raise UserError(f"--checkpoint-every must be at least 1 (got {self.checkpoint_every})")
        if self.chunk_size < 1:
            raise UserError(f"chunk_size must be at least 1 (got {self.chunk_size})")


def core_row(r: dict) -> dict:
    """The scan columns of a row (None for a null)."""
    return {c: cell(r.get(c)) for c in CORE_COLUMNS}


REPORT_DIRNAME = "report"            # where `curate report` / `curate run` put the page


def _exclusions(manifest_path: Path, root: Path | None = None) -> tuple[callable, list[str]]:
    """What the scan leaves out: our own outputs beside the manifest, wherever its folder is.

    In the manifest's folder (compared by real path, so a folder reached through a symlink is
    recognised): the manifest and its temporary files, our folders of derived files (`cache/`,
    `pack/`: tagged, see `manifests.paths.is_ours`) and anything below them, `report/` when it
    holds our report, other manifests (clean.parquet, ...) and their temporary files. Everything else
    there is scanned like any file; a `root` inside one of our folders (the mirror of a URI in
    `cache/inputs/`) is scanned. Returns the predicate for `walk_files` (it takes real paths) and
    the list it fills with what it left out.
    """
    folder = os.path.realpath(manifest_path.parent)
    names = {manifest_path.name}
    ours: set[str] = set()
    try:
        with os.scandir(folder) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False) and (is_ours(e.path) or (
                        e.name == REPORT_DIRNAME and is_report_folder(Path(e.path)))):
                    ours.add(e.name)
                elif e.name not in names and e.is_file(follow_symlinks=False) and is_manifest(e.path):
                    names.add(e.name)
    except OSError:
        pass  # not there yet (first scan) or unreadable: nothing of ours in it
    inside = tuple(os.path.join(folder, d) + os.sep for d in ours)   # a link may lead below them
    if root is not None:
        below = os.path.realpath(root) + os.sep
        inside = tuple(d for d in inside if not below.startswith(d))
    ours |= names
    excluded: list[str] = []

    def exclude(p: str) -> bool:
        where, base = os.path.split(p)
        hit = p.startswith(inside) or where == folder and (
            base in ours or (base.startswith(".") and base.endswith(".tmp")
                             and any(base.startswith(f".{n}.") for n in names)))
        if hit and p not in excluded:
            excluded.append(p)
        return hit

    return exclude, excluded


def _changed_verdict_params(previous: Manifest | None, opts: ScanOptions) -> dict:
    """{name: (old, new)} of the verdict options that differ from those the rows were scanned with.

    The rows of a manifest were scanned with the options of every scan back to the last
    complete one (an interrupted scan re-probed only part of them).
    """
    changed: dict = {}
    for rec in reversed(previous.history if previous is not None else []):
        if rec.get("stage") != "scan":
            continue
        params = rec.get("params") or {}
        for name, new in opts.verdict_params().items():
            if name in params and params[name] != new and name not in changed:
                changed[name] = (params[name], new)
        if params.get("complete", True):
            break
    return changed


def _load_previous(manifest_path: Path, root: Path) -> Manifest | None:
    if manifest_path.is_dir():
        raise UserError(f"-o {manifest_path} is a folder; give a file name such as "
                        f"{manifest_path / 'manifest.parquet'}")
    if not manifest_path.exists():
        return None
    m = read_manifest(manifest_path)
    if m.root and Path(m.root) != root:
        raise UserError(f"{manifest_path} lists files of {m.root}, not {root}; "
                        "use another -o for another folder")
    return m


def scan_folder(root: str | os.PathLike, manifest_path: str | os.PathLike,
                opts: ScanOptions = ScanOptions(), *, workers: int | None = None,
                progress: bool = True) -> Manifest:
    """Scan `root` recursively into `manifest_path` (created, or updated in place); return it.
    `root` may be a URI (`s3://bucket/prefix`, ...): it is mirrored beside the manifest first
    (`curate.remote`)."""
    opts.check()
    source = str(root) if is_uri(root) else None
    if source is None:
        root = Path(root)
        if not root.exists():
            raise UserError(f"folder to scan not found: {root}")
        if not root.is_dir():
            raise UserError(f"not a folder: {root} (curate scan takes a folder of images)")
        root = root.resolve()
    manifest_path = Path(os.path.abspath(manifest_path))
    try:
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the folder of {manifest_path}: {exc.strerror or exc}") from exc
    workers = resolve_workers(workers)
    with manifest_lock(manifest_path):
        if source is not None:
            from .remote import mirror

            root = mirror(source, manifest_path.parent, workers=workers, progress=progress)
        return _scan_locked(root, manifest_path, opts, workers, progress, source)


def _scan_locked(root: Path, manifest_path: Path, opts: ScanOptions, workers: int, progress: bool,
                 source: str | None = None) -> Manifest:
    previous = _load_previous(manifest_path, root)
    opts = opts.with_previous(previous)
    exclude, excluded = _exclusions(manifest_path, root)

    try:
        entries: list[Entry] = list(walk_files(root, exclude=exclude, follow_links=bool(opts.follow_links)))
    except OSError as exc:
        raise UserError(f"cannot list {root}: {exc.strerror or exc}") from exc
    if not entries and previous is None:
        raise UserError(f"no files found under {root}")

    old_recs = previous.records() if previous is not None else []
    old_rows = {r["path"]: core_row(r) for r in old_recs if r["crop_index"] == 0}
    old_crops = [r for r in old_recs if r["crop_index"] != 0]
    # later stages' columns, kept by sample_id (as they are: taken from the old table)
    extra = [c for c in previous.columns if c not in CORE_COLUMNS] if previous is not None else []
    old_at = {r["sample_id"]: i for i, r in enumerate(old_recs)}
    changed = _changed_verdict_params(previous, opts)
    if changed:
        log.warning("re-probing every file: %s changed since the last scan",
                    ", ".join(f"--{k.replace('_', '-')} {a} -> {b}" for k, (a, b) in changed.items()))

    done: dict[str, dict] = {}      # path -> current scan row
    todo: list[tuple[str, str | None, str | None]] = []
    for e in entries:
        prev = old_rows.get(e.relpath)
        if e.problem is None and prev is not None and prev["status"] not in ("unreadable", "outside_folder") \
                and not changed:
            try:
                st = os.stat(root / e.relpath)
            except OSError:
                st = None
            if st is not None and st.st_size == prev["size_bytes"] and st.st_mtime_ns == prev["mtime_ns"]:
                if not opts.rehash:
                    done[e.relpath] = prev
                    continue
                todo.append((e.relpath, None, prev["sha256"]))
                continue
        todo.append((e.relpath, e.problem, None, e.status))
    stats = {"reused": len(done)}   # rows kept as they were (unchanged files)
    seen = {e.relpath for e in entries}
    missing = {p: r for p, r in old_rows.items() if p not in seen}
    for p, r in missing.items():
        if not (r["status"] == "unreadable" and (r["error"] or "").startswith(MISSING)):
            r = {**r, "status": "unreadable", "error": f"{MISSING} (was {r['status']})"}
        done[p] = r

    params = {"root": str(root), **asdict(opts), "workers": workers, **engine.current().describe(), "excluded": excluded,
              "files": len(entries), "reprobed_for": sorted(changed), **({"source_uri": source} if source else {})}
    base_history = list(previous.history) if previous is not None else []
    input_path = manifest_path if previous is not None else None

    def restatused() -> dict[str, str]:
        """path -> sample_id of files probed again whose status changed with the same content (a
        changed --max-pixels, say): later stages' columns were made for the old status."""
        return {p: r["sample_id"] for p, r in done.items()
                if p in old_rows and p not in missing and r.get("sample_id") == old_rows[p]["sample_id"]
                and old_rows[p]["status"] != "unreadable" and r["status"] != old_rows[p]["status"]}

    def write(complete: bool) -> None:
        rows = [core_row(done.get(p) or old_rows[p]) for p in sorted(set(done) | (seen & set(old_rows)))]
        stale = restatused()
        keep_paths = {p for p, r in done.items()
                      if p in old_rows and r.get("sample_id") == old_rows[p]["sample_id"]}
        keep_paths |= {p for p in seen & set(old_rows) if p not in done}
        keep_paths -= set(stale)
        crops = [r for r in old_crops if r["path"] in keep_paths]
        if complete and len(crops) < len(old_crops):
            log.warning("dropping %d detect crop row(s) of files whose content or status changed; "
                        "run detect again", len(old_crops) - len(crops))
        status = {r["path"]: r["status"] for r in rows}
        rows += [{**core_row(r), "status": status.get(r["path"])} for r in crops]
        rows.sort(key=lambda r: (r["path"], r["crop_index"]))
        table = pa.table({c: build([r[c] for r in rows], _TYPES[c]) for c in CORE_COLUMNS},
                         schema=pa.schema(core.FIELDS))
        if extra:
            cleared = set(stale.values())
            at = build([None if r["sample_id"] in cleared else old_at.get(r["sample_id"]) for r in rows], pa.int64())
            later = previous.table.select(extra).take(at)
            for c in extra:
                table = table.append_column(later.schema.field(c), later.column(c))
        m = Manifest(table=table, root=str(root), history=list(base_history))
        write_manifest(m, manifest_path, stage="scan", input_path=input_path, root=str(root),
                       params={**params, "complete": complete, "rows": len(rows),
                               "reused": stats["reused"],
                               "scanned": len(done) - stats["reused"] - len(missing)})

    fn = partial(probe_many, root=str(root), max_pixels=opts.max_pixels)

    def add(results: list[dict]) -> None:
        for r in results:
            if r.get("unchanged"):
                r = {**old_rows[r["path"]], "mtime_ns": r["mtime_ns"]}
                stats["reused"] += 1
            else:
                r["sample_id"] = sample_id(content_digest(r), r["path"], 0)
            done[r["path"]] = r

    run_chunks(pooled(fn, todo, workers=workers, chunk_size=opts.chunk_size, progress=progress, desc="scan"),
               add, every=opts.checkpoint_every, seconds=opts.checkpoint_seconds, publish=write)
    restated = restatused()
    if restated and extra:
        log.warning("%d file(s) changed status on this scan; their repair, detect and later columns "
                    "were cleared so those stages redo them", len(restated))
    counts = Counter(r["status"] for r in done.values())
    log.info("scanned %s: %d file(s), %d unchanged, %d gone; %s", root, len(entries), stats["reused"],
             len(missing), ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return read_manifest(manifest_path)
