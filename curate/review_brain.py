"""The FiftyOne Brain in `curate review`, computed from our own embeddings (`curate embed`), so no
model is downloaded: each sample's `uniqueness`, a 2-D visualisation for the App's embeddings panel,
a similarity index ("sort by similarity" in the App: show me more like this), and saved views of
the odd bikes and of each cluster (`curate cluster`).

Runs again on every `curate review`: the runs of an earlier one are replaced, so they always match
the manifest's current embeddings.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

VISUALIZATION = "embeddings_map"      # brain keys
SIMILARITY = "similarity"
ODD_VIEW = "odd bikes (top 5% outlier rank)"
ODD_RANK = 0.95
MIN_SAMPLES = 4                       # fewer embedded samples: no Brain runs (nothing to compare)


def _vectors(ds, df: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """The dataset's sample ids that have an embedding, and those embeddings in the same order."""
    from .embed import embedded

    have, vecs = embedded(df)
    if vecs is None:
        return [], np.zeros((0, 0), np.float32)       # several backends in one manifest: no common space
    row = {str(df["sample_id"].iat[i]): n for n, i in enumerate(have)}
    pairs = [(oid, row[sid]) for sid, oid in zip(*ds.values(["sample_id", "id"])) if sid in row]
    return [oid for oid, _ in pairs], vecs[[n for _, n in pairs]]


def add_brain(ds, df: pd.DataFrame) -> list[str]:
    """Brain runs from the manifest's embeddings, and the odd-bike and cluster views; returns the
    names of the views made (the caller keeps the list, to remove them on the next build)."""
    import fiftyone.brain as fob
    from fiftyone import ViewField as F

    for key in (VISUALIZATION, SIMILARITY):
        if key in ds.list_brain_runs():
            ds.delete_brain_run(key)
    if "embedding" not in df.columns:
        return []
    ids, vecs = _vectors(ds, df)
    if len(ids) < MIN_SAMPLES:
        log.info("review: %d embedded sample(s): no Brain runs", len(ids))
        return []
    view = ds.select(ids, ordered=True)
    fob.compute_uniqueness(view, embeddings=vecs, progress=False)
    fob.compute_visualization(view, embeddings=vecs, method="pca", brain_key=VISUALIZATION, progress=False)
    fob.compute_similarity(view, embeddings=vecs, backend="sklearn", brain_key=SIMILARITY, progress=False)
    made = []
    if ds.has_field("outlier_rank"):
        ds.save_view(ODD_VIEW, ds.match(F("outlier_rank") >= ODD_RANK).sort_by("outlier_rank", reverse=True),
                     description="the samples least like the others in embedding space, most unusual first")
        made.append(ODD_VIEW)
    if ds.has_field("cluster"):
        for c in sorted({int(c) for c in ds.distinct("cluster")}):
            title = f"cluster {c}"
            ds.save_view(title, ds.match(F("cluster") == c), description=f"samples of cluster {c} (curate cluster)")
            made.append(title)
    log.info("review: Brain uniqueness, visualization %r and similarity %r from %d embeddings", VISUALIZATION,
             SIMILARITY, len(ids))
    return made
