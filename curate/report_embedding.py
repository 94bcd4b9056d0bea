"""The report's sections that come from the embeddings (`curate embed`, `curate cluster`): the odd
bikes (kept samples, most unusual first), one strip of examples per cluster with its size and
whether it is small, and two 2-D maps (by cluster, by reject reason)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from manifests.paths import sample_image_path

from .contact_sheet import SheetOptions, contact_sheet

ODD_SHEET = "sheet_odd_bikes.png"
MAP_CLUSTERS = "map_clusters.png"
MAP_REASONS = "map_reasons.png"


@dataclass(frozen=True)
class Pictures:
    """What the sections draw with: the manifest's folder and root, the output folder, sheet sizes."""
    folder: Path
    root: str
    out_dir: Path
    per_sheet: int
    tile: int
    cols: int
    strip: int
    seed: int


def _floats(df: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(df[col], errors="coerce").astype(float).to_numpy()


def odd_section(df: pd.DataFrame, records: list[dict], keep: np.ndarray, pics: Pictures) -> list[str]:
    """The kept primary samples with the highest outlier rank, most unusual first."""
    if "outlier_rank" not in df.columns:
        return []
    rank = _floats(df, "outlier_rank")
    idx = np.flatnonzero(keep & np.isfinite(rank) & (df["crop_index"].to_numpy() == 0))
    if not len(idx):
        return []
    idx = idx[np.lexsort((idx, -rank[idx]))][:pics.per_sheet]
    items = [(sample_image_path(pics.folder, pics.root, records[i]),
              f"{rank[i]:.3f} {Path(str(records[i]['path'])).name}") for i in idx]
    contact_sheet(items, pics.out_dir / ODD_SHEET, SheetOptions(tile=pics.tile, cols=pics.cols))
    return ['<h2 id="odd">Odd bikes</h2>',
            f"<p>The {len(idx)} kept samples that are least like the others (the rank of the distance to "
            "their 5th nearest neighbour in embedding space, 1 = most unusual), most unusual first. The "
            "<code>outlier</code> rule rejects them only when its threshold is set "
            "(<code>curate score --manifest M --rethreshold --threshold outlier=0.95</code>, or "
            "<code>curate calibrate</code>).</p>",
            f'<img src="{ODD_SHEET}" alt="contact sheet: odd bikes, most unusual first">']


def cluster_sections(df: pd.DataFrame, records: list[dict], keep: np.ndarray, reason: list,
                     summary, pics: Pictures) -> list[str]:
    """Cluster sizes with a strip each, the small ones named, and the two maps."""
    from .plots import scatter_map

    if summary is None:
        return []
    cl = pd.to_numeric(df["cluster"], errors="coerce").to_numpy()
    kept_cl = np.where(keep, cl, np.nan)
    strip_opts = SheetOptions(tile=96, cols=pics.strip, caption_h=0)
    rng = np.random.default_rng(pics.seed + 2)
    rows = []
    for c, size in summary.sizes.items():
        idx = np.flatnonzero(kept_cl == c)
        shown = np.sort(rng.choice(idx, size=min(pics.strip, len(idx)), replace=False)) if len(idx) else idx
        fname = f"strip_cluster_{c}.png"
        contact_sheet([(sample_image_path(pics.folder, pics.root, records[i]), "") for i in shown],
                      pics.out_dir / fname, strip_opts)
        small = c in summary.small
        rows.append(f"<tr><td>{c}</td><td>{int(len(idx))}</td><td>{size}</td><td>{'small' if small else ''}</td>"
                    f'<td><img class="strip" src="{fname}" alt="examples of cluster {c}"></td></tr>')
    x, y = _floats(df, "map_x"), _floats(df, "map_y")
    on_map = np.isfinite(x) & np.isfinite(y)
    kept_on = on_map & keep
    scatter_map(x[kept_on], y[kept_on], [f"cluster {int(c)}" for c in cl[kept_on]], pics.out_dir / MAP_CLUSTERS,
                title="kept samples by cluster", order=[f"cluster {c}" for c in summary.sizes])
    why = np.array(["kept" if k else (r or "rejected") for k, r in zip(keep, reason)], dtype=object)
    scatter_map(x[on_map], y[on_map], list(why[on_map]), pics.out_dir / MAP_REASONS,
                title="every embedded sample by verdict", muted=("kept",))
    small = ", ".join(str(c) for c in summary.small)
    say_small = (f"Small clusters (under half an even share of the kept samples): <b>{small}</b>; a generator "
                 "sees few examples of these kinds: add photos like them, or accept that it draws them "
                 "poorly." if small else "No cluster is small (each holds at least half an even share).")
    return ['<h2 id="clusters">Balance: clusters of the kept samples</h2>',
            f"<p>k-means ({len(summary.sizes)} clusters) of the embeddings of the {summary.fitted_on} samples "
            "kept when <code>curate cluster</code> ran, largest first. " + say_small + "</p>",
            "<table><thead><tr><th>cluster</th><th>kept now</th><th>when fitted</th><th></th><th>examples</th>"
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>",
            '<p>The embeddings projected on their first two principal components (fitted on the kept '
            'samples): by cluster, and every sample by its verdict (kept in grey).</p>',
            f'<div class="hists"><img src="{MAP_CLUSTERS}" alt="2-D map of the kept samples by cluster">'
            f'<img src="{MAP_REASONS}" alt="2-D map of every sample by verdict"></div>']


def embedding_sections(m, records: list[dict], keep: np.ndarray, reason: list, pics: Pictures) -> list[str]:
    from .cluster import ClusterSummary

    return (odd_section(m.df, records, keep, pics)
            + cluster_sections(m.df, records, keep, reason, ClusterSummary.of(m), pics))
