"""`curate cluster`: is the kept set balanced? k-means clusters of the kept samples' embeddings
(`curate embed`), a cluster id for every embedded sample, and a 2-D map (PCA) for the report.

The clusters are fitted on the primary samples that `curate filter` kept (every embedded primary
sample when filter has not run); every other embedded row gets the cluster of its nearest centre, so
the map can also show where the rejects lie. Fitting needs no image I/O: it reads the stored vectors
only, and the same manifest gives the same clusters (seeded k-means, ids ordered by size, largest
first). A cluster is "small" when it holds under half the kept samples of an even split; the report
lists them, since a generator learns little from a handful of examples of a kind.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import UserError
from manifests import Manifest, merge_columns, read_manifest, write_manifest

from .embed import embedded
from .work_lock import locks_manifest

log = logging.getLogger(__name__)

STAGE = "cluster"
SMALL_SHARE = 0.5          # a cluster under this share of an even split of the kept samples is small


@dataclass(frozen=True)
class ClusterOptions:
    clusters: int = 8
    seed: int = 0

    def check(self) -> None:
        if not 2 <= self.clusters <= 100:
            raise UserError(f"--clusters must be in 2..100 (got {self.clusters})")


@dataclass(frozen=True)
class ClusterSummary:
    sizes: dict[int, int]     # cluster id -> kept samples in it
    small: list[int]          # ids of the small clusters
    fitted_on: int            # samples the clusters were fitted on

    @classmethod
    def of(cls, m: Manifest) -> "ClusterSummary | None":
        p = m.stage_params(STAGE)
        if not p or "cluster" not in m.df.columns:
            return None
        return cls({int(k): int(v) for k, v in p["sizes"].items()}, [int(c) for c in p["small"]],
                   int(p["fitted_on"]))


def _fit_rows(df: pd.DataFrame, have: np.ndarray) -> np.ndarray:
    """Of the rows `have` (with an embedding), those the clusters are fitted on: the kept primary samples."""
    primary = df["crop_index"].to_numpy()[have] == 0
    kept = np.ones(len(have), dtype=bool)
    if "keep" in df.columns:
        kept = df["keep"].astype("boolean").fillna(False).to_numpy(dtype=bool)[have]
    return np.flatnonzero(primary & kept)


def fit_clusters(vectors: np.ndarray, fit: np.ndarray, opts: ClusterOptions
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cluster id, map x, map y) of every row of `vectors`, fitted on the rows `fit`. Ids are
    renumbered by the size of the cluster among the fitted rows, largest first."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    k = min(opts.clusters, len(fit))
    km = KMeans(n_clusters=k, n_init=10, random_state=opts.seed).fit(vectors[fit])
    raw = km.predict(vectors)
    sizes = np.bincount(km.labels_, minlength=k)
    order = np.lexsort((np.arange(k), -sizes))             # largest first, ties by k-means' own id
    rank = np.empty(k, dtype=int)
    rank[order] = np.arange(k)
    xy = PCA(n_components=2, random_state=opts.seed).fit(vectors[fit]).transform(vectors)
    return rank[raw], xy[:, 0], xy[:, 1]


@locks_manifest()
def cluster_manifest(manifest_path, opts: ClusterOptions = ClusterOptions()) -> Manifest:
    """Cluster the kept samples' embeddings; write `cluster`, `map_x`, `map_y` into the manifest."""
    opts.check()
    manifest_path = Path(manifest_path)
    m = read_manifest(manifest_path)
    df = m.df
    if "embedding" not in df.columns:
        raise UserError(f"{manifest_path}: no embeddings; run `curate embed --manifest {manifest_path}` first")
    have, vectors = embedded(df)
    fit = _fit_rows(df, have)              # positions within `have`
    if len(fit) < 4:
        raise UserError(f"{manifest_path}: {len(fit)} kept sample(s) with an embedding; clusters need at least 4")
    if vectors is None:
        raise UserError(f"{manifest_path}: embeddings of several sizes (several backends): rerun "
                        "`curate embed --force` with one backend")
    ids, x, y = fit_clusters(vectors, fit, opts)
    n = len(df)
    cl = np.full(n, -1)
    mx, my = np.full(n, np.nan), np.full(n, np.nan)
    cl[have], mx[have], my[have] = ids, x, y
    new = pd.DataFrame({
        "sample_id": df["sample_id"].astype("string").to_numpy(),
        "cluster": pd.array([int(c) if c >= 0 else None for c in cl], dtype="Int16"),
        "map_x": pd.array([float(v) if np.isfinite(v) else None for v in mx], dtype="Float32"),
        "map_y": pd.array([float(v) if np.isfinite(v) else None for v in my], dtype="Float32"),
    })
    m.df = merge_columns(df, new)
    k = int(ids.max()) + 1
    fitted = ids[fit]
    sizes = {c: int((fitted == c).sum()) for c in range(k)}
    small = [c for c, s in sizes.items() if s < SMALL_SHARE * len(fit) / k]
    params = {"clusters": opts.clusters, "k": k, "seed": opts.seed, "fitted_on": int(len(fit)),
              "sizes": {str(c): s for c, s in sizes.items()}, "small": small, "map": "pca",
              "embed_key": (m.stage_params("embed") or {}).get("key"),
              "on": "kept" if "keep" in df.columns else "all embedded primary samples"}
    write_manifest(m, manifest_path, stage=STAGE, params=params, input_path=manifest_path)
    log.info("cluster: %d clusters of %d kept samples; small: %s", k, len(fit), small or "none")
    return m
