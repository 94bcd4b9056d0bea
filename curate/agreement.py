"""How far the tool's verdicts agree with a person's: keep recall, reject recall, per-rule precision.

A person's labels are `keep` or a reject reason (see docs/labelling.md); a reviewer's tags from
`curate review` are `keep` or `reject` without a reason. Both are compared with the filter's verdict
on the manifest's primary rows (one per photo).

A picture counts as *kept by the tool* when its row is kept, or when it is rejected as a duplicate
and another copy of its group is kept (a person keeps one copy; which one is immaterial).

- keep recall: share of the photos the person keeps that the tool keeps;
- reject recall: share of the photos the person rejects that the tool rejects;
- per rule: precision = share of the rule's rejects that the person rejects too (for any reason:
  a rule is wrong when it throws away a photo the person keeps); recall = share of the person's
  rejects *for the reasons the rule stands for* (`RULE_REASONS`) that this rule rejects.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import UserError

KEEP = "keep"
REJECT = "reject"          # a reviewer's tag: rejected, reason not given
LABEL_REASONS = ("no_motorbike", "part_closeup", "cut_off", "several_bikes", "occluded",
                 "busy_background", "poor_quality")
LABELS = (KEEP, *LABEL_REASONS)

# The person's reasons each tool rule stands for (for the rule's recall).
RULE_REASONS: dict[str, tuple[str, ...]] = {
    "no_motorbike": ("no_motorbike",),
    "closeup": ("part_closeup",),
    "odd_closeup": ("part_closeup",),
    "cut_off": ("cut_off",),
    "several": ("several_bikes",),
    "crowded": ("several_bikes", "occluded"),
    "occluded": ("occluded",),
    "busy": ("busy_background",),
    "text": ("busy_background",),
    "blur": ("poor_quality",),
    "dark": ("poor_quality",),
    "bright": ("poor_quality",),
    "small": ("poor_quality",),
    "grey": ("poor_quality",),
    "aspect": ("poor_quality",),
}


def read_labels(path: str | Path) -> pd.DataFrame:
    """The labels CSV (`path,label[,note]`), checked: known labels, each path once."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise UserError(f"--labels {path}: cannot read ({exc.strerror or exc})") from exc
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise UserError(f"--labels {path}: expected a CSV with columns path,label[,note]")
    df = pd.DataFrame(rows)
    bad = sorted(set(df["label"]) - set(LABELS))
    if bad:
        raise UserError(f"--labels {path}: unknown label {bad[0]!r}; expected one of {', '.join(LABELS)}")
    dup = df["path"][df["path"].duplicated()]
    if len(dup):
        raise UserError(f"--labels {path}: {dup.iloc[0]} is labelled twice")
    return df


def picture_kept(df: pd.DataFrame) -> np.ndarray:
    """Per row: the tool keeps it, or rejects it as a duplicate of a copy that it keeps."""
    keep = df["keep"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    if "dup_group" not in df.columns:
        return keep
    reason = df["reject_reason"].astype("string").fillna("").to_numpy(dtype=object)
    groups = df["dup_group"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    kept_groups = set(groups[keep & ~np.isnan(groups)].tolist())
    as_copy = np.array([r == "duplicate" and g in kept_groups for r, g in zip(reason, groups)], dtype=bool)
    return keep | as_copy


@dataclass
class RuleAgreement:
    rule: str
    fired: int            # photos this rule rejected (as the verdict's reason)
    person_rejects: int   # of those, photos the person rejects
    reasons: int          # photos the person rejects for the reasons the rule stands for
    caught: int           # of those, rejected by this rule

    @property
    def precision(self) -> float | None:
        return self.person_rejects / self.fired if self.fired else None

    @property
    def recall(self) -> float | None:
        return self.caught / self.reasons if self.reasons else None


@dataclass
class Agreement:
    n: int
    person_keeps: int
    tool_keeps_of_those: int
    person_rejects: int
    tool_rejects_of_those: int
    rules: list[RuleAgreement] = field(default_factory=list)
    confusion: pd.DataFrame | None = None   # person label x tool verdict (kept / reason)
    disagreements: pd.DataFrame | None = None  # path, label, tool verdict of rows that disagree

    @property
    def keep_recall(self) -> float | None:
        return self.tool_keeps_of_those / self.person_keeps if self.person_keeps else None

    @property
    def reject_recall(self) -> float | None:
        return self.tool_rejects_of_those / self.person_rejects if self.person_rejects else None

    def as_dict(self) -> dict:
        return {"n": self.n, "person_keeps": self.person_keeps, "keep_recall": self.keep_recall,
                "person_rejects": self.person_rejects, "reject_recall": self.reject_recall,
                "rules": {r.rule: {"fired": r.fired, "precision": r.precision, "recall": r.recall}
                          for r in self.rules}}


def compare(df: pd.DataFrame, labels: pd.Series) -> Agreement:
    """Agreement of a filtered manifest's primary rows with `labels` (path -> label).

    Rows without a label are left out; labels without a row are an error (a wrong folder).
    """
    if "keep" not in df.columns:
        raise UserError("the manifest has no verdict yet: run `curate filter` first")
    base = df[df["crop_index"] == 0].reset_index(drop=True)
    kept_pic = picture_kept(df)[np.flatnonzero(df["crop_index"].to_numpy() == 0)]
    paths = base["path"].astype(str)
    missing = sorted(set(labels.index) - set(paths))
    if missing:
        raise UserError(f"{len(missing)} labelled photo(s) are not in the manifest, e.g. {missing[0]}")
    on = paths.isin(labels.index).to_numpy()
    lab = paths[on].map(labels).to_numpy(dtype=object)
    kept = kept_pic[on]
    reason = base["reject_reason"].astype("string").fillna("").to_numpy(dtype=object)[on]
    verdict = np.where(kept, "kept", np.where(reason == "", "kept", reason))
    verdict = np.array(["kept (as a copy)" if k and r == "duplicate" else v
                        for k, r, v in zip(kept, reason, verdict)], dtype=object)
    person_keep = lab == KEEP
    ag = Agreement(n=int(on.sum()), person_keeps=int(person_keep.sum()),
                   tool_keeps_of_those=int((kept & person_keep).sum()),
                   person_rejects=int((~person_keep).sum()),
                   tool_rejects_of_those=int((~kept & ~person_keep).sum()))
    for rule in sorted({r for r in reason if r and r != "duplicate"} | set(RULE_REASONS)):
        fired = (reason == rule) & ~kept
        wanted = np.isin(lab, RULE_REASONS.get(rule, ()))
        if not fired.any() and not wanted.any():
            continue
        ag.rules.append(RuleAgreement(rule, int(fired.sum()), int((fired & ~person_keep).sum()),
                                      int(wanted.sum()), int((fired & wanted).sum())))
    dup = (reason == "duplicate") & ~kept
    if dup.any():
        ag.rules.append(RuleAgreement("duplicate", int(dup.sum()), int((dup & ~person_keep).sum()), 0, 0))
    ag.confusion = pd.crosstab(pd.Series(lab, name="person"), pd.Series(verdict, name="tool"))
    wrong = person_keep != kept
    ag.disagreements = pd.DataFrame({"path": paths[on].to_numpy()[wrong], "label": lab[wrong],
                                     "tool": verdict[wrong]})
    return ag


def _pct(v: float | None) -> str:
    return "   -  " if v is None else f"{100 * v:5.1f}%"


def format_agreement(ag: Agreement, title: str = "") -> str:
    """A text report: the two recalls, a row per rule, the confusion table."""
    lines = [title] if title else []
    lines.append(f"photos labelled: {ag.n}  (person keeps {ag.person_keeps}, rejects {ag.person_rejects})")
    lines.append(f"keep recall:   {_pct(ag.keep_recall)}  ({ag.tool_keeps_of_those} of {ag.person_keeps} "
                 "photos the person keeps are kept)")
    lines.append(f"reject recall: {_pct(ag.reject_recall)}  ({ag.tool_rejects_of_those} of {ag.person_rejects} "
                 "photos the person rejects are rejected)")
    lines.append("")
    lines.append(f"{'rule':<14}{'rejects':>8}{'precision':>11}{'recall':>9}   (recall: of the person's "
                 "rejects for the rule's reasons)")
    for r in ag.rules:
        lines.append(f"{r.rule:<14}{r.fired:>8}{_pct(r.precision):>11}{_pct(r.recall):>9}"
                     + (f"   of {r.reasons}" if r.reasons else ""))
    if ag.confusion is not None and len(ag.confusion):
        lines.append("")
        lines.append("person label (rows) x tool verdict (columns):")
        lines.append(ag.confusion.to_string())
    return "\n".join(lines)
