"""The curation stages from Python (a notebook): the same functions and option dataclasses the CLIs use.

    import curate.api as cu
    res = cu.run("photos/", "work/")            # every stage, as `curate run` (a folder or an s3:// URI)
    res.df[["path", "keep", "reject_reason"]]     # the manifest as a DataFrame

Each function reads and rewrites the manifest in place (atomically, resuming what is done) and never
writes among the photos. Options are given as keyword arguments of the stage's options dataclass
(`cu.DetectOptions`, ...) or as that dataclass itself (`opts=`). Heavy libraries (torch, ultralytics,
FiftyOne) are imported only when a function needs them.

The names are not top-level `curate.scan`, `curate.detect`, ...: those are the stage modules
(`curate/scan.py`, ...), which Python binds on the package when they are imported.
"""
from __future__ import annotations

from pathlib import Path

from manifests import read_manifest  # noqa: F401  (re-exported: the manifest as `.df`)

from .calibrate import MIN_TAGS
from .cluster import ClusterOptions
from .dedupe import DedupeOptions
from .detect import DetectOptions
from .embed import EmbedOptions
from .filter import FilterOptions
from .pipeline import RunOptions, RunResult
from .repair import RepairOptions
from .report import ReportOptions
from .review import ReviewOptions
from .scan import ScanOptions
from .score import ScoreOptions
from .text import TextOptions

__all__ = ["run", "scan", "repair", "detect", "embed", "text", "score", "dedupe", "filter", "cluster", "calibrate", "report",
           "review", "pull", "read_manifest", "RunOptions", "RunResult", "ScanOptions", "RepairOptions",
           "DetectOptions", "EmbedOptions", "TextOptions", "ScoreOptions", "DedupeOptions", "FilterOptions", "ClusterOptions",
           "ReportOptions", "ReviewOptions"]


def _opts(cls, opts, options):
    if opts is not None and options:
        raise TypeError(f"give opts={cls.__name__}(...) or keyword options, not both")
    return opts if opts is not None else cls(**options)


def run(folder, workdir="work", opts: RunOptions | None = None, *, progress: bool = True, **options) -> RunResult:
    """`curate run`: every stage on `folder` into `workdir` (manifest, cache, clean.parquet, report).

    Options are `RunOptions` fields (weights, device, workers, per_image, report). Returns a
    `RunResult`: counts per reason, and the manifest as a DataFrame in `.df`.
    """
    from .pipeline import run_pipeline

    return run_pipeline(folder, Path(workdir), _opts(RunOptions, opts, options), progress=progress)


def scan(folder, manifest, opts: ScanOptions | None = None, *, workers: int | None = None,
         progress: bool = True, **options):
    """`curate scan`: one row per file of `folder` into `manifest` (created or updated); returns it."""
    from .scan import scan_folder

    return scan_folder(folder, manifest, _opts(ScanOptions, opts, options), workers=workers, progress=progress)


def repair(manifest, opts: RepairOptions | None = None, *, workers: int | None = None, progress: bool = True,
           **options):
    """`curate repair`: RGB copies in the cache for what needs them (frames, truncation, CMYK, ...)."""
    from .repair import repair_manifest

    return repair_manifest(manifest, _opts(RepairOptions, opts, options), workers=workers, progress=progress)


def detect(manifest, opts: DetectOptions | None = None, *, progress: bool = True, **options):
    """`curate detect`: YOLO on every decodable file, the primary motorbike, its crop."""
    from .detect import detect_manifest

    return detect_manifest(Path(manifest), _opts(DetectOptions, opts, options), progress=progress)


def embed(manifest, opts: EmbedOptions | None = None, *, progress: bool = True, **options):
    """`curate embed`: one vector per sample crop (backend `stats`, `tflite` or `ultralytics`), and the
    outlier rank the `outlier` and `odd_closeup` checks read."""
    from .embed import embed_manifest

    return embed_manifest(Path(manifest), _opts(EmbedOptions, opts, options), progress=progress)


def text(manifest, opts: TextOptions | None = None, *, progress: bool = True, **options):
    """`curate text`: the share of each photo under text lines (headlines, banners), which the `text`
    check reads; None, with a warning, where the text detector is not installed."""
    from .text import text_manifest

    return text_manifest(Path(manifest), _opts(TextOptions, opts, options), progress=progress)


def cluster(manifest, opts: ClusterOptions | None = None, **options):
    """`curate cluster`: k-means clusters of the kept samples' embeddings and a 2-D map."""
    from .cluster import cluster_manifest

    return cluster_manifest(Path(manifest), _opts(ClusterOptions, opts, options))


def score(manifest, opts: ScoreOptions | None = None, *, progress: bool = True, **options):
    """`curate score`: every check's raw value, score and flag (see `curate.checks.CHECKS`)."""
    from .score import score_manifest

    return score_manifest(manifest, _opts(ScoreOptions, opts, options), progress=progress)


def dedupe(manifest, opts: DedupeOptions | None = None, *, progress: bool = True, **options):
    """`curate dedupe`: duplicate groups and the rank of each copy."""
    from .dedupe import dedupe_manifest

    return dedupe_manifest(manifest, _opts(DedupeOptions, opts, options), progress=progress)


def filter(manifest, out=None, opts: FilterOptions | None = None, **options):  # noqa: A001 (the stage's name)
    """`curate filter`: `keep` and `reject_reason` in the manifest, the kept rows to `out`
    (default clean.parquet beside it); returns a `FilterResult` (counts per reason)."""
    from .filter import filter_manifest

    return filter_manifest(Path(manifest), None if out is None else Path(out), _opts(FilterOptions, opts, options))


def calibrate(manifest, *, dry_run: bool = False, min_tags: int = MIN_TAGS):
    """`curate calibrate`: thresholds fitted to the review tags; returns the `Calibration` (before/after)."""
    from .calibrate import calibrate_manifest

    return calibrate_manifest(manifest, dry_run=dry_run, min_tags=min_tags)


def report(manifest, out_dir=None, opts: ReportOptions | None = None, **options) -> Path:
    """`curate report`: the HTML page (default `report/` beside the manifest); returns its path."""
    from .report import write_report

    out_dir = Path(manifest).parent / "report" if out_dir is None else out_dir
    return write_report(manifest, out_dir, _opts(ReportOptions, opts, options))


def review(manifest, opts: ReviewOptions | None = None, *, progress: bool = True, **options):
    """The manifest's FiftyOne dataset and the App on it; returns the FiftyOne session (in a notebook
    cell, `session` shows the App). Tag samples `keep` / `reject`, then call `pull(manifest)`."""
    from .review import build_dataset, launch

    return launch(build_dataset(manifest, progress=progress), _opts(ReviewOptions, opts, options))


def pull(manifest) -> int:
    """The reviewer's tags from FiftyOne into the manifest; returns the number of decisions."""
    from .review import pull_decisions

    return pull_decisions(manifest)
