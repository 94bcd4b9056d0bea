"""`curate run`: scan, repair, detect, embed, text, score, dedupe, filter, cluster and report, in order,
resuming.

Each stage resumes by itself (it skips rows it already handled with the same
parameters), so running the pipeline again after an interruption redoes only
what is missing.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from manifests import read_manifest
from common.errors import UserError
from manifests.paths import CACHE_DIRNAME, claim_folder

from .detect import DetectOptions
from .detector import DEFAULT_WEIGHTS

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.parquet"
CLEAN_NAME = "clean.parquet"
REPORT_DIRNAME = "report"


@dataclass(frozen=True)
class RunOptions:
    weights: str = DEFAULT_WEIGHTS
    device: str = "auto"
    workers: int | None = None
    engine: str | None = None         # local or ray (None: the caller's `curate.engine.using`, else local)
    address: str | None = None        # engine ray: the cluster to join
    per_image: str = "primary"
    far_look: float = DetectOptions.far_look   # detect's third look, at thumbnails (0: off; `curate detect --far-look`)
    report: bool = True
    follow_links: bool | None = None   # follow symlinks out of the folder (None: as the last scan, else no)
    embed: str = "auto"                # auto: the detector's own backbone where it has one; stats: weightless


@dataclass
class RunResult:
    manifest: Path
    clean: Path
    report: Path | None
    files_in: int
    repaired: int
    kept: int
    removed: dict[str, int] = field(default_factory=dict)

    samples: int = 0          # rows: files, plus one per extra motorbike with --per-image all

    @property
    def df(self):
        """The manifest as a DataFrame (read now: one row per sample, every stage's columns)."""
        return read_manifest(self.manifest).df

    def summary_rows(self) -> list[tuple[str, int]]:
        rows = [("files in", self.files_in), ("repaired", self.repaired)]
        if self.samples != self.files_in:
            rows.append(("samples (one per motorbike)", self.samples))
        rows += [(f"rejected: {reason}", n) for reason, n in sorted(self.removed.items()) if n]
        rows.append(("kept", self.kept))
        return rows


def run_pipeline(folder: Path | str, workdir: Path, opts: RunOptions = RunOptions(), *,
                 progress: bool = True) -> RunResult:
    """Every stage in order on `folder` into `workdir`, holding the work folder's lock (one run at a
    time; see `curate.work_lock`)."""
    from .remote import is_uri
    from .work_lock import work_lock

    workdir = Path(workdir)
    folder = str(folder) if is_uri(folder) else Path(folder)     # a URI is mirrored by the scan
    if isinstance(folder, Path) and not folder.is_dir():
        raise UserError(f"FOLDER: {folder} is not a directory")
    if isinstance(folder, Path) and workdir.resolve() == folder.resolve():
        raise UserError(f"-o {workdir}: the work folder cannot be the photo folder itself (its reports "
                        "and manifests would be scanned as photos); use another folder, e.g. "
                        f"{folder / 'work'}")
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"-o {workdir}: exists and is not a folder")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"-o {workdir}: cannot create the work folder ({exc.strerror or exc})") from exc
    claim_folder(workdir / CACHE_DIRNAME)  # a user's own `cache/` there is refused before any work
    from .engine import using

    engine = using(opts.engine, opts.address) if opts.engine else nullcontext()   # else the caller's
    with work_lock(workdir / CACHE_DIRNAME, workdir, manifest_name=MANIFEST_NAME), engine:
        return _run_locked(folder, workdir, opts, progress)


def embed_options(opts: RunOptions, weights: Path):
    """`--embed auto`: the detector's backbone (a .tflite through LiteRT, a .pt through ultralytics);
    the weightless statistics for a random-init .yaml and exports without readable features."""
    from .embed import EmbedOptions

    backend = {".tflite": "tflite", ".pt": "ultralytics"}.get(Path(weights).suffix.lower(), "stats")
    if opts.embed == "stats" or backend == "stats":
        return EmbedOptions(workers=opts.workers)
    return EmbedOptions(backend=backend, weights=str(weights))     # at MODEL_SIDE


def _run_locked(folder: Path | str, workdir: Path, opts: RunOptions, progress: bool) -> RunResult:
    from .cluster import cluster_manifest
    from .dedupe import DedupeOptions, dedupe_manifest
    from .detect import DetectOptions, detect_manifest
    from .detector import resolve_weights
    from .embed import embed_manifest
    from .filter import filter_manifest
    from .remote import mirror_folder
    from .repair import repair_manifest
    from .scan import ScanOptions, scan_folder
    from .score import ScoreOptions, score_manifest
    from .text import TextOptions, text_manifest

    weights = resolve_weights(opts.weights)  # a missing --weights fails now, not after the scan
    manifest = workdir / MANIFEST_NAME
    existing = read_manifest(manifest) if manifest.exists() else None
    local = mirror_folder(folder, workdir) if isinstance(folder, str) else folder   # a URI's mirror
    if existing is not None and existing.root and Path(existing.root).resolve() != local.resolve():
        raise UserError(f"-o {workdir}: holds a manifest of {existing.root}, not {folder}; "
                        "choose another work folder")

    log.info("scan %s", folder)
    scan_folder(folder, manifest, ScanOptions(follow_links=opts.follow_links), workers=opts.workers,
                progress=progress)  # keeps an earlier --max-pixels and --follow-links
    log.info("repair")
    repair_manifest(manifest, workers=opts.workers, progress=progress)
    log.info("detect")
    detect_manifest(manifest, DetectOptions(weights=opts.weights, device=opts.device,
                                            per_image=opts.per_image, far_look=opts.far_look), progress=progress)
    log.info("embed")        # before score: the outlier checks read the embeddings' outlier rank
    embed_manifest(manifest, embed_options(opts, weights), progress=progress)
    log.info("text")         # before score: the text check reads the photos' text share
    text_manifest(manifest, TextOptions(workers=opts.workers), progress=progress)
    # score before dedupe: the keeper of each duplicate group is chosen by the sharpness and
    # busyness that score measures, so dedupe does not decode and measure them a second time.
    log.info("score")
    score_manifest(manifest, ScoreOptions(workers=opts.workers), progress=progress)
    log.info("dedupe")
    dedupe_manifest(manifest, DedupeOptions(workers=opts.workers), progress=progress)
    clean = workdir / CLEAN_NAME
    result = filter_manifest(manifest, clean)
    try:
        cluster_manifest(manifest)
    except UserError as exc:     # too few kept samples to cluster: the report has no balance section
        log.warning("cluster: skipped (%s)", exc)
    report = None
    if opts.report:
        from .report import write_report

        report = write_report(manifest, workdir / REPORT_DIRNAME)

    df = read_manifest(manifest).df
    files_in = int((df["crop_index"] == 0).sum())
    repaired = 0
    if "repair_action" in df.columns:
        actions = df["repair_action"].astype("string")
        repaired = int(actions.isin(["converted", "best_frame", "recovered"]).sum())
    return RunResult(manifest=manifest, clean=clean, report=report, files_in=files_in,
                     repaired=repaired, kept=result.kept, removed=dict(result.removed), samples=len(df))
