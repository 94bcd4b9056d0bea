"""`curate report`: one HTML page to decide whether to trust the filter.

The page (`index.html`) shows a counts table, a contact sheet of the kept samples and one per reject
reason (a capped, seeded sample of each), and a histogram per score check, split into samples the
check flags, kept samples and samples rejected for another reason. Everything it links lies beside
it in the output folder, so the folder can be copied or zipped as it is.

The verdict comes from the manifest's `keep`/`reject_reason` columns (written by `curate filter`);
when the filter has not run yet it is computed here with the default rules, and the page says so.
"""
from __future__ import annotations

import datetime as _dt
import html
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from manifests import read_manifest
from manifests.atomic import write_text_atomic
from manifests.paths import sample_image_path

from .contact_sheet import SheetOptions, contact_sheet
from .filter import REVIEWER, FilterOptions, decide, flag_checks, titles

log = logging.getLogger(__name__)

KEPT = "kept"


@dataclass(frozen=True)
class ReportOptions:
    per_sheet: int = 64      # most samples shown per contact sheet
    tile: int = 128          # thumbnail size, pixels
    cols: int = 8
    seed: int = 0            # which samples a capped sheet shows


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "x"


def _verdict(df: pd.DataFrame) -> tuple[np.ndarray, list[str | None], bool]:
    """(keep, reason, from_filter): the filter's columns when present, else computed now."""
    if "keep" in df.columns and "reject_reason" in df.columns and df["keep"].notna().all():
        keep = df["keep"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        reason = [None if k else (str(r) if r is not None and r is not pd.NA else "unknown")
                  for k, r in zip(keep, df["reject_reason"].tolist())]
        return keep, reason, True
    v = decide(df, FilterOptions())
    return v.keep, v.reason, False


def _pick(idx: np.ndarray, cap: int, seed: int) -> np.ndarray:
    if len(idx) <= cap:
        return idx
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(idx, size=cap, replace=False))


def _caption(row, reason: str | None) -> str:
    name = Path(str(row["path"])).name
    ci = row.get("crop_index")
    if ci is not None and ci is not pd.NA and int(ci) != 0:
        name = f"{name}#{int(ci)}"
    group = row.get("dup_group") if reason == "duplicate" else None
    if group is not None and group is not pd.NA and not (isinstance(group, float) and np.isnan(group)):
        return f"group {int(group)}: {name}"   # its keeper is in the same group on the kept sheet
    score = row.get(f"{reason}_score") if reason else None
    if score is not None and score is not pd.NA and not (isinstance(score, float) and np.isnan(score)):
        return f"{float(score):.2f} {name}"
    return name


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td:nth-child(n+3) { text-align: right; }
img { max-width: 100%; border: 1px solid #ddd; }
.note { color: #a60; }
.hists img { width: 480px; margin: 0 1em 1em 0; }
"""


def write_report(manifest_path: str | Path, out_dir: str | Path, opts: ReportOptions = ReportOptions()) -> Path:
    """Write `out_dir/index.html` with its PNGs; returns the path of the page."""
    from tqdm import tqdm

    from .plots import score_histogram

    manifest_path, out_dir = Path(manifest_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    m = read_manifest(manifest_path)
    df = m.df.reset_index(drop=True)
    root = m.root or str(m.folder)
    keep, reason, from_filter = _verdict(df)
    names = titles(df.columns)
    n = len(df)
    records = df.to_dict("records")

    groups: dict[str, np.ndarray] = {KEPT: np.flatnonzero(keep)}
    order = [*[r for r in names if r != REVIEWER], REVIEWER]
    reasons = pd.Series([r for r in reason if r is not None], dtype="object")
    for r in [*order, *sorted(set(reasons) - set(order))]:
        idx = np.array([i for i, x in enumerate(reason) if x == r], dtype=int)
        if len(idx):
            groups[r] = idx

    sheet_opts = SheetOptions(tile=opts.tile, cols=opts.cols)
    sections = []
    for r, idx in tqdm(list(groups.items()), desc="contact sheets", unit="sheet"):
        shown = _pick(idx, opts.per_sheet, opts.seed)
        items = [(sample_image_path(m.folder, root, records[i]), _caption(records[i], None if r == KEPT else r))
                 for i in shown]
        title = "kept" if r == KEPT else names.get(r, r)
        fname = f"sheet_{_slug(r)}.png"
        if items:
            contact_sheet(items, out_dir / fname, sheet_opts)
        sections.append((r, title, len(idx), len(shown), fname if items else None))

    hists = []
    for check in flag_checks(df.columns):
        col = f"{check}_score"
        if col not in df.columns:
            continue
        score = pd.to_numeric(df[col], errors="coerce").astype(float).to_numpy()
        flagged = df[f"{check}_flag"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        parts = {f"flagged {check}": score[flagged], "kept": score[keep & ~flagged],
                 "rejected otherwise": score[~keep & ~flagged]}
        fname = f"hist_{_slug(check)}.png"
        score_histogram(parts, out_dir / fname, title=f"{names.get(check, check)} ({col})", xlabel=col)
        hists.append((check, fname))

    rows = [["all samples", "", n, "100.0%"]]
    for r, title, count, _, _ in sections:
        rows.append([r if r != KEPT else KEPT, title if r != KEPT else "", count, f"{100 * count / max(n, 1):.1f}%"])
    status_rows = [[s, "", c, f"{100 * c / max(n, 1):.1f}%"]
                   for s, c in df["status"].astype("string").value_counts(dropna=False).items()]

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>motocurate report: {html.escape(manifest_path.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Curation report: {html.escape(manifest_path.name)}</h1>",
        f"<p>Manifest <code>{html.escape(str(manifest_path.resolve()))}</code>, photos under "
        f"<code>{html.escape(str(root))}</code>; {n} samples, {int(keep.sum())} kept. Written "
        f"{_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}.</p>",
    ]
    if not from_filter:
        parts.append('<p class="note">The filter has not been run on this manifest: the verdict '
                     "below uses the default rules (run <code>curate filter</code>).</p>")
    parts.append('<h2 id="counts">Counts</h2>')
    parts.append(_table(["reason", "what", "samples", "share"], rows))
    parts.append('<h2 id="status">Scan status</h2>')
    parts.append(_table(["status", "", "files", "share"], status_rows))
    if hists:
        parts.append('<h2 id="scores">Scores</h2><div class="hists">')
        for check, fname in hists:
            parts.append(f'<img src="{html.escape(fname)}" alt="histogram of {html.escape(check)} scores">')
        parts.append("</div>")
    parts.append('<h2 id="sheets">Contact sheets</h2>')
    for r, title, count, shown, fname in sections:
        cap = f" (random {shown} of {count}, seed {opts.seed})" if shown < count else ""
        parts.append(f'<h3 id="{_slug(r)}">{html.escape(title)}: {count} samples{html.escape(cap)}</h3>')
        if fname:
            parts.append(f'<img src="{html.escape(fname)}" alt="contact sheet: {html.escape(title)}">')
    parts.append("</body></html>")

    index = out_dir / "index.html"
    write_text_atomic(index, "\n".join(parts) + "\n")
    log.info("report: %s", index)
    return index
