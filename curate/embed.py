"""`curate embed`: one embedding per sample crop (see `curate.embeddings` for the backends),
stored in the manifest (`embedding`, a list of float32, L2-normalised).

It runs like every row stage (`curate.row_stage`): rows already embedded with the same key (the
backend, its weights' sha256, the size) from the same source are reused, finished rows are
journaled, a killed run resumes, and the manifest is written once at the end.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import UserError
from manifests import Manifest, merge_columns, read_manifest, write_manifest
from manifests.paths import present

from . import engine
from .embeddings import BACKENDS, check_tflite_weights, check_ultralytics_weights
from .row_jobs import JobImageError, load_job_rgb, relative_source, row_job, stale_jobs
from .row_stage import Journal, run_rows
from .work_lock import locks_manifest

log = logging.getLogger(__name__)

STAGE = "embed"
VERSION = "v1"
OUTLIER_K = 5            # the outlier check's distance is to the k-th nearest primary sample
STATS_SIDE = 128         # the stats backend measures the crop's longer side at this
# The square a model's backbone embeds each crop on. Scraped crops are mostly smaller than it (web
# photos: median 183 x 275 px), so at the detector's own 640 px the backbone ran mostly over grey
# margin. At 384: 2.2x faster than 640; on the web labels keep and reject recall moved by one photo
# at most (docs/agreement.md, item 15).
MODEL_SIDE = 384


@dataclass(frozen=True)
class EmbedOptions:
    backend: str = "stats"
    weights: str | None = None      # ultralytics: a .pt (or .yaml: random init, seeded); tflite: a .tflite
    size: int | None = None         # stats: longer side measured (STATS_SIDE); a model: the square the crop
                                    # is letterboxed on (MODEL_SIDE; tflite: a multiple of 32)
    workers: int | None = None      # stats: processes (the model backends run one model in one process)
    force: bool = False

    def __post_init__(self):
        if self.size is None:
            object.__setattr__(self, "size", STATS_SIDE if self.backend == "stats" else MODEL_SIDE)

    def check(self) -> None:
        if self.backend not in BACKENDS:
            raise UserError(f"--backend {self.backend}: choose from {', '.join(BACKENDS)}")
        if not 32 <= self.size <= 1024:
            raise UserError(f"--size must be in 32..1024 (got {self.size})")
        if self.backend == "ultralytics":
            check_ultralytics_weights(self.weights)
        elif self.backend == "tflite":
            check_tflite_weights(self.weights)
            if self.size % 32:
                raise UserError(f"--size {self.size}: --backend tflite runs the backbone on a square of a "
                                "multiple of 32 px (its stride); try 320 or 640")
        elif self.weights:
            raise UserError(f"--weights goes with --backend ultralytics or tflite, not {self.backend}")


def backend_label(opts: EmbedOptions) -> str:
    return opts.backend if opts.backend == "stats" else f"{opts.backend}:{Path(str(opts.weights)).name}"


def _weights_sha(opts: EmbedOptions) -> str | None:
    if not opts.weights:
        return None
    p = Path(str(opts.weights))
    if p.is_file():
        from manifests.ids import file_sha256

        return file_sha256(p)
    return f"name:{p.name}"          # an ultralytics built-in .yaml


def _key(opts: EmbedOptions) -> str:
    return hashlib.sha256(f"{VERSION}:{opts.backend}:{_weights_sha(opts)}:{opts.size}".encode()).hexdigest()[:12]


def embed_chunk(jobs: list[dict], backend: str, size: int, weights) -> list[dict]:
    """Embeddings of a chunk of row jobs (the unit of work sent to a worker)."""
    out, images, where = [], [], []
    for j in jobs:
        rec = {"sample_id": j["sample_id"], "embed_source": j["sample"], "embedding": None, "embed_error": None}
        try:
            images.append(load_job_rgb(j))
            where.append(len(out))
        except JobImageError as exc:
            rec["embed_error"] = str(exc)
        out.append(rec)
    if images:
        for k, v in zip(where, BACKENDS[backend].embed(images, size, weights)):
            out[k]["embedding"] = [float(x) for x in np.asarray(v, dtype=np.float32)]
    return out


def embedded(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions of the rows that have an embedding, and their vectors as one float32 matrix (None
    when they differ in length: several backends in one manifest, no common space)."""
    if "embedding" not in df.columns:
        return np.zeros(0, dtype=int), None
    have = np.flatnonzero(df["embedding"].map(lambda v: v is not None and len(v) > 0).to_numpy(dtype=bool))
    vecs = [df["embedding"].iat[i] for i in have]
    if len({len(v) for v in vecs}) > 1:
        return have, None
    return have, np.asarray(vecs, dtype=np.float32) if vecs else np.zeros((0, 0), np.float32)


def outlier_distances(vectors: list, primary: np.ndarray, k: int = OUTLIER_K
                      ) -> tuple[list[float | None], list[float | None]]:
    """Per row: the cosine distance to its k-th nearest primary sample (itself excluded), and that
    distance's rank among the primary samples' own, 0..1 (None without a vector, or with fewer than
    two primary vectors)."""
    from sklearn.neighbors import NearestNeighbors

    have = np.array([v is not None for v in vectors])
    prim = np.flatnonzero(have & primary)
    out_d: list[float | None] = [None] * len(vectors)
    out_r: list[float | None] = [None] * len(vectors)
    if len(prim) < 2:
        return out_d, out_r
    dims = {len(vectors[i]) for i in np.flatnonzero(have)}
    if len(dims) != 1:
        return out_d, out_r                   # mixed backends in one manifest: no common space
    base = np.asarray([vectors[i] for i in prim], dtype=np.float32)
    k = min(k, len(prim) - 1)
    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(base)
    rows = np.flatnonzero(have)
    dist, idx = nn.kneighbors(np.asarray([vectors[i] for i in rows], dtype=np.float32))
    own = dict(zip(prim.tolist(), range(len(prim))))
    kth = np.empty(len(rows))
    for n, i in enumerate(rows):
        ds = [d for d, j in zip(dist[n], idx[n]) if own.get(int(i)) != int(j)]   # itself excluded
        kth[n] = ds[k - 1]
    ref = np.sort(kth[[n for n, i in enumerate(rows) if int(i) in own]])
    for n, i in enumerate(rows):
        out_d[i] = float(max(kth[n], 0.0))
        out_r[i] = float(np.searchsorted(ref, kth[n], side="left") / max(1, len(ref) - 1))
        out_r[i] = min(out_r[i], 1.0)
    return out_d, out_r


@locks_manifest()
def embed_manifest(manifest_path, opts: EmbedOptions = EmbedOptions(), *, progress: bool = True) -> Manifest:
    """Embed every row's crop (resuming); rewrite the manifest in place."""
    from common.pool import resolve_workers

    opts.check()
    manifest_path = Path(manifest_path)
    m = read_manifest(manifest_path)
    if m.root is None:
        raise UserError(f"{manifest_path}: manifest has no root folder (was it written by curate scan?)")
    df, folder = m.df, m.folder
    key = _key(opts)
    jobs = [row_job(folder, m.root, r) for r in df.to_dict("records")]
    journal = Journal(manifest_path, STAGE, key)
    done = journal.begin(opts.force)
    prev = m.stage_params(STAGE) or {}
    if not opts.force and prev.get("key") == key and "embed_source" in df.columns:
        for r in df.to_dict("records"):
            sid = str(r["sample_id"])
            if sid not in done and present(r.get("embed_source")):
                emb = r.get("embedding")
                done[sid] = {"sample_id": sid, "embed_source": r["embed_source"],
                             "embedding": None if emb is None or not len(emb) else [float(x) for x in emb],
                             "embed_error": r.get("embed_error") if present(r.get("embed_error")) else None}
    todo = stale_jobs(jobs, done, folder, "embed_source")
    log.info("embed: %d row(s) to embed, %d reused", len(todo), len(jobs) - len(todo))
    workers = 1 if BACKENDS[opts.backend].needs_weights else resolve_workers(opts.workers)   # a model per process
    run_rows(partial(embed_chunk, backend=opts.backend, size=opts.size, weights=opts.weights), todo, done,
             journal, workers=workers, progress=progress, desc="embed", unit="img",
             prepare=lambda r: {**r, "embed_source": relative_source(folder, r["embed_source"])},
             actors=BACKENDS[opts.backend].needs_weights)
    recs = [done.get(j["sample_id"], {}) for j in jobs]
    label = backend_label(opts)
    new = pd.DataFrame({
        "sample_id": df["sample_id"].astype("string").to_numpy(),
        "embedding": pd.Series([r.get("embedding") for r in recs], dtype=object).to_numpy(),
        "embed_backend": pd.array([label if r.get("embedding") is not None else None for r in recs], dtype="string"),
        "embed_source": pd.array([r.get("embed_source") for r in recs], dtype="string"),
        "embed_error": pd.array([r.get("embed_error") for r in recs], dtype="string"),
    })
    knn, rank = outlier_distances([r.get("embedding") for r in recs], df["crop_index"].to_numpy() == 0)
    new["outlier_knn"] = pd.array(knn, dtype="Float32")
    new["outlier_rank"] = pd.array(rank, dtype="Float32")
    m.df = merge_columns(df, new)
    dims = {len(r["embedding"]) for r in recs if r.get("embedding") is not None}
    params = {"backend": opts.backend, "label": label, "weights": opts.weights, "weights_sha256": _weights_sha(opts),
              "size": opts.size, "key": key, "dims": sorted(dims), "workers": workers, **engine.current().describe(),
              "embedded": int(sum(r.get("embedding") is not None for r in recs)), "outlier_k": OUTLIER_K}
    write_manifest(m, manifest_path, stage=STAGE, params=params, input_path=manifest_path)
    journal.remove()
    return m
