"""Histograms of the quality scores (matplotlib's object API: no pyplot, no global backend state)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.atomic import atomic_path


def score_histogram(groups: dict[str, np.ndarray], out: Path, *, title: str,
                    xlabel: str = "score", threshold: float | None = None, bins: int = 40) -> Path:
    """Stacked histogram of score values per group (e.g. kept / flagged / other rejects) to a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    fig = Figure(figsize=(5.0, 3.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    data = {k: np.asarray(v, dtype=float) for k, v in groups.items()}
    data = {k: v[np.isfinite(v)] for k, v in data.items()}
    finite = [v for v in data.values() if len(v)]
    lo, hi = (0.0, 1.0)
    if finite:
        allv = np.concatenate(finite)
        lo, hi = min(lo, float(allv.min())), max(hi, float(allv.max()))
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    labels = [f"{k} ({len(v)})" for k, v in data.items()]
    ax.hist(list(data.values()), bins=edges, stacked=True, label=labels)
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    return out
