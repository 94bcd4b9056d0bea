"""`curate calibrate`: fit the score checks' thresholds to the reviewer's own keep/reject tags.

Only stored values are used (`NAME_score` columns and the other rules' verdicts), no image is read.
The tags come from the review dataset in FiftyOne when there is one (read only), else from the
manifest's `review_decision` (what `curate review` last pulled).

The fit is a coordinate ascent on the balanced agreement of the filter's automatic verdict with the
tags, (keep recall + reject recall) / 2 over the tagged samples: each check's threshold in turn is
set to the candidate (a midpoint between two tagged scores, or its current value) that agrees best,
until no threshold moves. A threshold moves only when the move's gain stands out from chance: the
tagged samples whose verdict it changes, each weighted by its share of its own class (a keep counts
1/keeps, a reject 1/rejects), must gain at least `SIGNIFICANCE` standard deviations of what changing
them at random would give (the gain if each change were right or wrong with even odds has a standard
deviation of sqrt(sum of weights squared)), and at least one tagged sample. So a handful of tags
cannot drag a threshold on noise, and a move that rejects 24 tagged photos, 13 of them rightly,
does not happen. Without this test, on 300 tags of the web labels, such moves raised the agreement on
the tags and lowered it on the other 898 photos (docs/agreement.md). The fitted thresholds are recorded the way
`curate score --rethreshold --threshold` records them (no image I/O), so `curate filter` and later
runs use them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from manifests import read_manifest
from common.errors import UserError

from .filter import FilterOptions, decide
from .work_lock import locks_manifest

log = logging.getLogger(__name__)

MIN_TAGS = 10          # fewer tags (or none of one kind) is no ground for a fit
MAX_PASSES = 5
SIGNIFICANCE = 2.0     # standard deviations a move's gain must reach (see the module's docstring)


@dataclass
class RuleFit:
    rule: str
    before: float | None          # threshold (None: not a score check)
    after: float | None
    fired_before: int             # tagged samples it rejects
    fired_after: int
    agree_before: int             # of those, tagged reject
    agree_after: int


@dataclass
class Calibration:
    tags: int
    keeps: int
    rejects: int
    before: tuple[float, float]    # keep recall, reject recall on the tagged samples
    after: tuple[float, float]
    thresholds: dict[str, float] = field(default_factory=dict)   # the fitted ones that changed
    rules: list[RuleFit] = field(default_factory=list)

    @property
    def balanced_before(self) -> float:
        return sum(self.before) / 2

    @property
    def balanced_after(self) -> float:
        return sum(self.after) / 2


def review_tags(manifest_path: Path, df: pd.DataFrame) -> pd.Series:
    """sample_id -> keep/reject: FiftyOne's review dataset where it exists, else the manifest."""
    tags = {}
    if "review_decision" in df.columns:
        for sid, d in zip(df["sample_id"], df["review_decision"].astype("string")):
            if not pd.isna(d):
                tags[str(sid)] = str(d)
    try:
        import fiftyone as fo
    except ImportError:   # review is an optional extra; the manifest's pulled tags still count
        return pd.Series(tags, dtype=object)
    from .review import dataset_name, decision_of, read_decisions

    name = dataset_name(manifest_path)
    if fo.dataset_exists(name):
        for sid, t in read_decisions(fo.load_dataset(name)).items():
            d = decision_of(t)
            if d is not None:
                tags[str(sid)] = d
            else:
                tags.pop(str(sid), None)
    return pd.Series(tags, dtype=object)


def _recalls(rejected: np.ndarray, want_reject: np.ndarray) -> tuple[float, float]:
    keep_r = float((~rejected & ~want_reject).sum() / max(1, (~want_reject).sum()))
    rej_r = float((rejected & want_reject).sum() / max(1, want_reject.sum()))
    return keep_r, rej_r


def fit(df: pd.DataFrame, tags: pd.Series, thresholds: dict[str, float], *, min_tags: int = MIN_TAGS
        ) -> Calibration:
    """Fitted thresholds for the score checks present in `df` (no I/O)."""
    df = df.reset_index(drop=True)
    on = df["sample_id"].astype(str).isin(tags.index).to_numpy()
    want = df["sample_id"].astype(str)[on].map(tags).to_numpy(dtype=object)
    n_keep, n_rej = int((want == "keep").sum()), int((want == "reject").sum())
    if n_keep + n_rej < min_tags or not n_keep or not n_rej:
        raise UserError(f"calibrate needs at least {min_tags} tagged samples, some `keep` and some "
                        f"`reject` (found {n_keep} keep, {n_rej} reject): tag more in `curate review`")
    want_reject = want == "reject"
    v = decide(df, FilterOptions(use_review=False))
    checks = [c for c in thresholds if f"{c}_score" in df.columns and c in v.fired]
    scores = {c: df[f"{c}_score"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)[on] for c in checks}
    fixed = np.zeros(int(on.sum()), dtype=bool)   # rejected by a rule that is not a score check
    for name, mask in v.fired.items():
        # a duplicate is the picture another copy shows: a tag is about the picture, not the copy
        if name not in scores and name != "duplicate":
            fixed |= mask[on]
    th = {c: float(thresholds[c]) for c in checks}

    def rejected(t: dict[str, float]) -> np.ndarray:
        out = fixed.copy()
        for c in checks:
            out |= np.nan_to_num(scores[c], nan=-1.0) >= t[c]
        return out

    def balance(rej: np.ndarray) -> float:
        return sum(_recalls(rej, want_reject))

    step = 1.0 / max(n_keep, n_rej) - 1e-9   # the least one tagged sample is worth
    weight = np.where(want_reject, 1.0 / n_rej, 1.0 / n_keep)

    def needed(a: np.ndarray, b: np.ndarray) -> float:
        """The gain from verdicts `a` to verdicts `b` must reach this to count (see the docstring)."""
        return max(step, SIGNIFICANCE * float(np.sqrt((weight[a != b] ** 2).sum())))

    before = _recalls(rejected(th), want_reject)
    for _ in range(MAX_PASSES):
        moved = False
        for c in checks:
            s = np.unique(scores[c][~np.isnan(scores[c])])
            cands = sorted({th[c], 1.0, *((s[:-1] + s[1:]) / 2).tolist(), *(s[:1] - 1e-6).clip(0).tolist()})
            now = rejected(th)
            base = balance(now)
            best_t, best_bal = th[c], base
            for t in cands:
                rej = rejected({**th, c: float(t)})
                bal = balance(rej)
                if bal > best_bal and bal - base >= needed(now, rej):   # beats chance, not a tie shuffle
                    best_t, best_bal = float(t), bal
            if best_t != th[c]:
                th[c] = round(float(np.clip(best_t, 0.0, 1.0)), 4)
                moved = True
        if not moved:
            break
    cal = Calibration(tags=n_keep + n_rej, keeps=n_keep, rejects=n_rej, before=before,
                      after=_recalls(rejected(th), want_reject),
                      thresholds={c: th[c] for c in checks if th[c] != float(thresholds[c])})
    for name, mask in v.fired.items():
        m = mask[on]
        if name == "duplicate":
            continue
        if name in scores:
            after = np.nan_to_num(scores[name], nan=-1.0) >= th[name]
            cal.rules.append(RuleFit(name, float(thresholds[name]), th[name], int(m.sum()), int(after.sum()),
                                     int((m & want_reject).sum()), int((after & want_reject).sum())))
        elif m.any():
            cal.rules.append(RuleFit(name, None, None, int(m.sum()), int(m.sum()),
                                     int((m & want_reject).sum()), int((m & want_reject).sum())))
    return cal


@locks_manifest()
def calibrate_manifest(manifest_path: str | Path, *, dry_run: bool = False, min_tags: int = MIN_TAGS
                       ) -> Calibration:
    """Fit the thresholds to the review tags; record them unless `dry_run`."""
    manifest_path = Path(manifest_path)
    m = read_manifest(manifest_path)
    params = m.stage_params("score") or {}
    thresholds = params.get("thresholds")
    if not thresholds:
        raise UserError(f"--manifest {manifest_path}: no score results to calibrate; run `curate score` first")
    cal = fit(m.df, review_tags(manifest_path, m.df), thresholds, min_tags=min_tags)
    if cal.thresholds and not dry_run:
        from .score import reflag

        reflag(manifest_path, cal.thresholds)
    return cal


def format_calibration(cal: Calibration) -> str:
    def pct(v):
        return f"{100 * v:5.1f}%"

    def th(v):
        return "    -" if v is None else f"{v:5.3f}"

    lines = [f"tagged samples: {cal.tags} ({cal.keeps} keep, {cal.rejects} reject)",
             f"{'':<14}{'threshold':>19}{'rejects tagged':>20}{'of them tagged reject':>26}",
             f"{'rule':<14}{'before':>9}{'after':>10}{'before':>10}{'after':>10}{'before':>13}{'after':>13}"]
    for r in cal.rules:
        lines.append(f"{r.rule:<14}{th(r.before):>9}{th(r.after):>10}{r.fired_before:>10}{r.fired_after:>10}"
                     f"{r.agree_before:>13}{r.agree_after:>13}")
    lines.append(f"keep recall   {pct(cal.before[0])} -> {pct(cal.after[0])}")
    lines.append(f"reject recall {pct(cal.before[1])} -> {pct(cal.after[1])}")
    return "\n".join(lines)
