"""`curate report`: one HTML page to decide whether to trust the filter.

The page (`index.html`) shows a counts table with a strip of examples per reason, the agreement
of the verdict with the reviewer's tags (and with a person's labels, `--labels`) where there are
any, a contact sheet of the kept samples and one per reject
reason (a capped, seeded sample of each), and a histogram per score check, split into samples the
check flags, kept samples and samples rejected for another reason. Everything it links lies beside
it in the output folder, so the folder can be copied or zipped as it is.

The verdict is the one `curate filter` gives now: its rules as last run on this manifest (the default
rules when it has not run, and the page says so) applied to the current flags, duplicates and review
tags. When that differs from the manifest's `keep` column (scores re-thresholded since, say) the page
says how many samples changed and that `curate filter` updates clean.parquet.

The report never writes among the user's photos: its folder must be new, empty or an earlier report,
and not inside the scanned folder (except `report/` beside the manifest, which scans skip).
"""
from __future__ import annotations

import datetime as _dt
import html
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from manifests import read_manifest
from common.atomic import write_text_atomic
from common.errors import UserError
from manifests.paths import REPORT_TITLE, is_report_folder, is_within, present, sample_image_path

from .contact_sheet import SheetOptions, contact_sheet
from .filter import REVIEWER, FilterOptions, decide, flag_checks, titles
from .report_embedding import Pictures, embedding_sections

log = logging.getLogger(__name__)

KEPT = "kept"


@dataclass(frozen=True)
class ReportOptions:
    per_sheet: int = 64      # most samples shown per contact sheet
    tile: int = 128          # thumbnail size, pixels
    cols: int = 8
    seed: int = 0            # which samples a capped sheet shows
    strip: int = 8           # examples per reason in the front page's strip
    labels: Path | None = None   # a person's labels (path,label CSV, paths under the scanned folder)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "x"


@dataclass
class _Verdict:
    keep: np.ndarray
    reason: list[str | None]
    filtered: bool            # `curate filter` has run on this manifest
    changed: int              # samples whose verdict differs from the manifest's `keep` column


def _verdict(m) -> _Verdict:
    """What `curate filter` would decide now, with the options of its last run on this manifest."""
    df = m.df
    last = m.stage_params("filter")
    opts = FilterOptions()
    if last is not None:
        opts = FilterOptions(disabled=tuple(last.get("disabled", ())), use_review=last.get("use_review", True))
    try:
        v = decide(df, opts)
    except UserError:                     # a rule disabled then no longer exists: the defaults
        v = decide(df, FilterOptions())
    changed = 0
    if last is not None and "keep" in df.columns:
        stored = df["keep"].astype("boolean")
        changed = int((stored.isna() | (stored.fillna(False).to_numpy(dtype=bool) != v.keep)).sum())
    return _Verdict(v.keep, v.reason, last is not None, changed)


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
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, _Raw) else html.escape(str(c))}</td>" for c in r)
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td:nth-child(n+3) { text-align: right; }
img { max-width: 100%; border: 1px solid #ddd; }
.note { color: #a60; }
.hists img { width: 480px; margin: 0 1em 1em 0; }
img.strip { height: 48px; width: auto; max-width: none; border: 0; }
"""




class _Raw(str):
    """Table cell HTML that is not escaped (made here from escaped parts)."""


def _agreement_sections(m, keep: np.ndarray, reason: list, labels_path: Path | None) -> list[str]:
    """Agreement of the verdict with the reviewer's tags and with a person's labels, where there are."""
    from .agreement import compare, read_labels

    df = m.df.assign(keep=pd.array(keep, dtype="boolean"), reject_reason=pd.array(reason, dtype="string"))
    out = []
    sources = []
    if "review_decision" in df.columns:
        dec = df["review_decision"].astype("string")
        tagged = df[(df["crop_index"] == 0) & dec.notna()]
        if len(tagged):
            # the reviewer's own tags decide the verdict of what they tagged: compare without them
            auto = decide(m.df, FilterOptions(use_review=False))
            df_auto = df.assign(keep=pd.array(auto.keep, dtype="boolean"),
                                reject_reason=pd.array(auto.reason, dtype="string"))
            sources.append(("your review tags (automatic verdict, before the tags)", df_auto,
                            pd.Series(tagged["review_decision"].astype(str).to_numpy(),
                                      index=tagged["path"].astype(str).to_numpy())))
    if labels_path is not None:
        lab = read_labels(labels_path)
        sources.append((f"labels in {Path(labels_path).name}", df,
                        pd.Series(lab["label"].to_numpy(), index=lab["path"].to_numpy())))
    for title, frame, series in sources:
        try:
            ag = compare(frame, series)
        except UserError as exc:
            out.append(f'<p class="note">Agreement with {html.escape(title)}: {html.escape(str(exc))}</p>')
            continue
        rows = [["keep recall", f"{ag.tool_keeps_of_those} of {ag.person_keeps}", _pct(ag.keep_recall)],
                ["reject recall", f"{ag.tool_rejects_of_those} of {ag.person_rejects}", _pct(ag.reject_recall)]]
        rows += [[f"rule {r.rule}: precision", f"{r.person_rejects} of {r.fired}", _pct(r.precision)]
                 for r in ag.rules if r.fired]
        out.append(f'<h2 id="agreement">Agreement with {html.escape(title)}</h2>')
        out.append(f"<p>{ag.n} samples compared. Keep recall: the share of the samples kept by the person "
                   "that the tool keeps; reject recall: the share of their rejects that it rejects; a "
                   "rule's precision: the share of its rejects that the person rejects too.</p>")
        out.append(_table(["", "samples", "share"], rows))
    return out


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


_TEMPS = (".index.html.", ".sheet_", ".hist_", ".strip_", ".map_")   # temp files of the pictures and page a report writes


def _prepare_out_dir(out_dir: Path, m) -> None:
    """Refuse a folder where the report would land among the user's files; make it; remove what an
    earlier or interrupted report left there."""
    flag = f"-o {out_dir}"
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{flag}: exists and is not a folder")
    if out_dir.is_dir() and not is_report_folder(out_dir) and any(
            not p.name.startswith(_TEMPS) for p in out_dir.iterdir()):
        raise UserError(f"{flag}: the folder holds other files and no earlier report; choose a new or empty folder")
    if m.root and is_within(out_dir, m.root) and os.path.realpath(out_dir) != os.path.realpath(m.folder / "report"):
        raise UserError(f"{flag}: inside the scanned folder {m.root}, whose next scan would take the "
                        "report's pictures for photos; choose a folder outside it")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{flag}: cannot create the folder ({exc.strerror or exc})") from exc
    for old in out_dir.iterdir():
        # temp files an interrupted report left, and the pictures of an earlier one (a sheet for a
        # reason that no longer removes anything would stay there, unlinked, showing stale samples)
        if old.is_file() and old.name.startswith((*_TEMPS, "sheet_", "hist_", "strip_", "map_")):
            old.unlink(missing_ok=True)
    if not is_report_folder(out_dir):   # marked as ours before any picture lands in it
        write_text_atomic(out_dir / "index.html", f"<!DOCTYPE html><html><head><title>{REPORT_TITLE}: being "
                          "written</title></head><body>The report is being written.</body></html>\n")


def write_report(manifest_path: str | Path, out_dir: str | Path, opts: ReportOptions = ReportOptions()) -> Path:
    """Write `out_dir/index.html` with its PNGs; returns the path of the page."""
    from tqdm import tqdm

    from .plots import score_histogram

    manifest_path, out_dir = Path(manifest_path), Path(out_dir)
    m = read_manifest(manifest_path)
    m.df = m.df.reset_index(drop=True)
    df = m.df
    root = m.root or str(m.folder)
    _prepare_out_dir(out_dir, m)
    verdict = _verdict(m)
    keep, reason = verdict.keep, verdict.reason
    missing = [p for p in (sample_image_path(m.folder, root, r) for r in df.to_dict("records")
                           if str(r.get("status")) == "ok" or present(r.get("repaired_path")))
               if not p.exists()]
    if missing:
        log.warning("%d sample image(s) are missing, e.g. %s: `curate run` rebuilds the cache", len(missing),
                    missing[0])
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

    strip_opts = SheetOptions(tile=96, cols=opts.strip, caption_h=0)
    strips = {}
    for r, idx in groups.items():
        shown = _pick(idx, opts.strip, opts.seed + 1)
        fname = f"strip_{_slug(r)}.png"
        contact_sheet([(sample_image_path(m.folder, root, records[i]), "") for i in shown], out_dir / fname,
                      strip_opts)
        strips[r] = fname
    agreement = _agreement_sections(m, keep, reason, opts.labels)
    embedded = embedding_sections(m, records, keep, reason, Pictures(
        m.folder, root, out_dir, opts.per_sheet, opts.tile, opts.cols, opts.strip, opts.seed))

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

    rows = [["all samples", "", n, "100.0%", ""]]
    for r, title, count, _, _ in sections:
        strip = (f'<a href="#{_slug(r)}"><img class="strip" src="{html.escape(strips[r])}" '
                 f'alt="examples: {html.escape(title)}"></a>') if r in strips else ""
        rows.append([r if r != KEPT else KEPT, title if r != KEPT else "", count,
                     f"{100 * count / max(n, 1):.1f}%", _Raw(strip)])
    status_rows = [[s, "", c, f"{100 * c / max(n, 1):.1f}%"]
                   for s, c in df["status"].astype("string").value_counts(dropna=False).items()]

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{REPORT_TITLE}: {html.escape(manifest_path.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Curation report: {html.escape(manifest_path.name)}</h1>",
        f"<p>Manifest <code>{html.escape(str(manifest_path.resolve()))}</code>, photos under "
        f"<code>{html.escape(str(root))}</code>; {n} samples, {int(keep.sum())} kept. Written "
        f"{_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}.</p>",
    ]
    if not verdict.filtered:
        parts.append('<p class="note">The filter has not been run on this manifest: the verdict '
                     "below uses the default rules (run <code>curate filter</code>).</p>")
    elif verdict.changed:
        parts.append(f'<p class="note">{verdict.changed} sample(s) have another verdict than when '
                     "<code>curate filter</code> last ran (scores, duplicates or review tags changed since): "
                     "the page shows the verdict it gives now; run <code>curate filter</code> to update "
                     "clean.parquet.</p>")
    if missing:
        parts.append(f'<p class="note">{len(missing)} sample image(s) are missing (e.g. '
                     f"<code>{html.escape(str(missing[0]))}</code>): their tiles say \"file missing\"; "
                     "<code>curate run</code> rebuilds the cache.</p>")
    parts.append('<h2 id="counts">Counts</h2>')
    parts.append(_table(["reason", "what", "samples", "share", "examples"], rows))
    parts += agreement
    parts.append('<h2 id="status">Scan status</h2>')
    parts.append(_table(["status", "", "files", "share"], status_rows))
    if hists:
        parts.append('<h2 id="scores">Scores</h2><div class="hists">')
        for check, fname in hists:
            parts.append(f'<img src="{html.escape(fname)}" alt="histogram of {html.escape(check)} scores">')
        parts.append("</div>")
    parts += embedded
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
