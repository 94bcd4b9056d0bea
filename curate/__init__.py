"""Curate a scraped folder of photos: scan, repair, detect, embed, text, score, dedupe, review, filter,
cluster, report.

From Python (a notebook), `import curate.api as cu` (`curate.run` and `curate.read_manifest` work too);
the same functions the CLIs call:

    run         every stage on a folder (`curate run`), returns a RunResult (counts, `.df`)
    scan        one row per file into a manifest (`curate scan`)
    repair      RGB copies for frames, truncated files, CMYK, ... (`curate repair`)
    detect      YOLO, the primary motorbike and its crop (`curate detect`)
    embed       one vector per crop, and the outlier rank (`curate embed`)
    text        the share of each photo under text lines: headlines, banners (`curate text`)
    score       each check's raw value, score and flag (`curate score`)
    dedupe      duplicate groups and the rank of each copy (`curate dedupe`)
    filter      keep / reject_reason, the kept rows to clean.parquet (`curate filter`)
    cluster     k-means clusters of the kept samples and a 2-D map (`curate cluster`)
    calibrate   thresholds fitted to the review tags (`curate calibrate`)
    report      the HTML report (`curate report`)
    review      the FiftyOne App on the manifest, returns the session (`curate review`)
    pull        the reviewer's tags into the manifest (`curate review --pull`)
    read_manifest  a manifest file as `.df` (a DataFrame) with its provenance

Options are the CLIs' frozen dataclasses (`cu.RunOptions`, `cu.DetectOptions`, ...). Importing
`curate` or `curate.api` loads no torch, ultralytics or FiftyOne; the functions that need them do.
"""

_TOP = {"run", "pull", "read_manifest", "RunOptions", "RunResult"}   # no stage module of that name


def __getattr__(name):
    """`curate.run`, `curate.read_manifest`, ... without importing the stages until asked."""
    if name in _TOP:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'curate' has no attribute {name!r}")
