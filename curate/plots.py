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


def scatter_map(x: np.ndarray, y: np.ndarray, groups: list, out: Path, *, title: str,
                order: list | None = None, muted: tuple = ()) -> Path:
    """A 2-D map of samples, one colour per group (a cluster id or a reason) to a PNG; groups named
    in `muted` are drawn first, small and grey, so the others stand out."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    fig = Figure(figsize=(6.0, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    g = np.asarray([str(v) for v in groups], dtype=object)
    names = [str(v) for v in (order if order is not None else sorted(set(g)))]
    names = [n for n in names if n in muted] + [n for n in names if n not in muted]
    loud = [n for n in names if n not in muted]
    colours = [c for i, c in enumerate(colormaps["tab10"].colors) if i != 7]   # no grey: that is `muted`'s
    colours += [c for i, c in enumerate(colormaps["tab20b"].colors)]
    for n in names:
        sel = g == n
        if not sel.any():
            continue
        if n in muted:
            ax.scatter(x[sel], y[sel], s=6, c="#bbbbbb", label=f"{n} ({int(sel.sum())})", linewidths=0)
        else:
            ax.scatter(x[sel], y[sel], s=10, color=colours[loud.index(n) % len(colours)], label=f"{n} ({int(sel.sum())})",
                       linewidths=0)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=6, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    return out
