"""`curate filter`: automatic reject rules plus the reviewer's decisions -> `keep`, `reject_reason`.

Rules live in a registry. Each one looks at columns an earlier stage wrote and says which rows it
rejects; a rule whose columns are absent (a manifest straight from `scan` has no detections) is
simply not applicable. Every `<check>_flag` column written by `curate score` becomes a rule named
and titled after its check in `curate.checks.CHECKS` (the one place a check is defined), so a new
check needs no change here.

The verdict, per row:

1. a reviewer's `reject` tag rejects (reason: the first automatic rule that also fired, else
   `reviewer`);
2. a reviewer's `keep` tag keeps, overriding every overridable rule (flags, duplicates, no
   motorbike); nothing can keep a file that does not decode;
3. otherwise the first rule that fires, in registry order, is the reason; no rule -> kept.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from manifests import Manifest, read_manifest, write_manifest
from common.errors import UserError
from manifests.paths import is_within, present

from .work_lock import locks_manifest

log = logging.getLogger(__name__)

Table = "pd.DataFrame | pa.Table"   # what the rules read (annotations only: neither is imported here)
REVIEWER = "reviewer"          # reject_reason of a sample only the reviewer rejected
REPAIRED = ("converted", "best_frame", "recovered")


@dataclass(frozen=True)
class Rule:
    """An automatic reject rule: rows where `test(df)` is True are rejected with reason `name`."""

    name: str                        # reject_reason value, CLI name
    title: str                       # human wording: saved view in the App, report heading
    columns: tuple[str, ...]         # the rule applies when all of these columns exist
    test: Callable[[Table], np.ndarray]
    overridable: bool = True         # a reviewer's `keep` wins over it
    flag: bool = False               # derived from a `<check>_flag` column
    any_column: bool = False         # applies when any one of `columns` exists

    def applies(self, columns: set[str]) -> bool:
        return bool(set(self.columns) & columns) if self.any_column else set(self.columns) <= columns


def _columns(df) -> list[str]:
    """Column names of a DataFrame or an Arrow table (the rules read either: `curate dedupe` asks
    `decide` about a manifest it reads without pandas)."""
    return list(df.column_names) if hasattr(df, "column_names") else list(df.columns)


def _values(df, col: str) -> list:
    """A column of a DataFrame or an Arrow table as plain values, None for a null."""
    if hasattr(df, "column_names"):
        return df.column(col).to_pylist()
    return [v if present(v) else None for v in df[col].tolist()]


def _bool(df, col: str) -> np.ndarray:
    return np.array([v is not None and bool(v) for v in _values(df, col)], dtype=bool)


def _str_in(df, col: str, values) -> np.ndarray:
    values = {str(v) for v in values}
    return np.array([v is not None and str(v) in values for v in _values(df, col)], dtype=bool)


# Scan statuses that a repaired copy can rescue; any other non-ok status (a file that has become
# unreadable or vanished since it was repaired, say) rejects the row whatever its repair says.
RESCUABLE = ["truncated", "corrupt"]


def _unreadable(df: Table) -> np.ndarray:
    bad = ~_str_in(df, "status", ["ok"])
    if "repair_action" in _columns(df):
        rescued = _str_in(df, "repair_action", REPAIRED) & _str_in(df, "status", ["ok", *RESCUABLE])
        bad = (bad & ~rescued) | _str_in(df, "repair_action", ["unrecoverable"])
    return bad


RULES: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    if rule.name in RULES or rule.name == REVIEWER:
        raise ValueError(f"rule {rule.name!r} registered twice")
    RULES[rule.name] = rule
    return rule


register(Rule("unreadable", "unreadable file", ("status",), _unreadable, overridable=False))
register(Rule("detect_failed", "detection failed", ("detect_status",),
              lambda df: _str_in(df, "detect_status", ["not_decodable", "error"]), overridable=False))
def _not_measured(df: Table) -> np.ndarray:
    """Rows whose pixels score or dedupe could not read (a crop deleted from the cache, say): nothing
    says they are good, and training could not read them either."""
    out = np.zeros(len(df), dtype=bool)
    for col in ("score_error", "hash_error"):
        if col in _columns(df):
            out |= np.array([v is not None and len(str(v)) > 0 for v in _values(df, col)], dtype=bool)
    return out


register(Rule("not_measured", "pixels could not be read by score or dedupe", ("score_error", "hash_error"),
              _not_measured, overridable=False, any_column=True))
register(Rule("no_motorbike", "no motorbike", ("detect_status",),
              lambda df: _str_in(df, "detect_status", ["no_motorbike"])))
register(Rule("duplicate", "duplicates", ("is_duplicate",), lambda df: _bool(df, "is_duplicate")))


def flag_title(check: str) -> str:
    """The title of a score check, from the check registry (any unknown one by its name)."""
    from .checks import CHECKS

    return CHECKS[check].title if check in CHECKS else check.replace("_", " ")


def flag_rule(check: str) -> Rule:
    col = f"{check}_flag"
    return Rule(check, flag_title(check), (col,),
                lambda df, col=col: _bool(df, col), flag=True)


def flag_checks(columns) -> list[str]:
    """Score checks present in a manifest: every `<check>_flag` column, in column order."""
    return [c[: -len("_flag")] for c in columns if c.endswith("_flag") and len(c) > len("_flag")]


def applicable_rules(columns) -> list[Rule]:
    """Registered rules whose columns exist, then one rule per score check, in that order."""
    cols = set(columns)
    rules = [r for r in RULES.values() if r.applies(cols)]
    rules += [flag_rule(c) for c in flag_checks(columns) if c not in RULES]
    return rules


def titles(columns) -> dict[str, str]:
    """Reason name -> title for every reason a manifest with these columns can produce."""
    out = {r.name: r.title for r in applicable_rules(columns)}
    out[REVIEWER] = "rejected by reviewer"
    return out


@dataclass(frozen=True)
class FilterOptions:
    """Which rules run; `disabled` names rules to ignore (see `curate filter --list-rules`)."""

    disabled: tuple[str, ...] = ()
    use_review: bool = True          # apply the reviewer's keep/reject tags


@dataclass
class Verdict:
    keep: np.ndarray                 # bool per row
    reason: list[str | None]         # reject_reason per row
    fired: dict[str, np.ndarray]     # rule name -> bool per row (before the reviewer)
    restored: int                    # auto-rejected rows a reviewer kept
    rules: list[str]                 # the rules applied, in order
    handed: dict[int, list[int]] = field(default_factory=dict)  # new keeper -> dedupe's keepers it replaces


def rule_masks(df: Table, rules: list[Rule]) -> dict[str, np.ndarray]:
    return {r.name: np.asarray(r.test(df), dtype=bool) for r in rules}


def decide(df: Table, opts: FilterOptions = FilterOptions()) -> Verdict:
    """The verdict for every row of a manifest table, a DataFrame or an Arrow table (no I/O)."""
    rules = applicable_rules(_columns(df))
    from .checks import CHECKS

    known = {r.name for r in rules} | set(RULES) | set(CHECKS)
    if REVIEWER in opts.disabled:
        raise UserError(f"--no-rule {REVIEWER}: the reviewer's tags are not a rule; use --ignore-review")
    unknown = [n for n in opts.disabled if n not in known]
    if unknown:
        raise UserError(f"--no-rule {unknown[0]}: unknown rule; choose from {', '.join(sorted(known))}")
    rules = [r for r in rules if r.name not in set(opts.disabled)]
    fired = rule_masks(df, rules)
    n = len(df)
    if "duplicate" in fired:
        fired["duplicate"], handed = _duplicates_now(df, fired)
    else:
        handed = {}
    reason: list[str | None] = [None] * n
    hard = np.zeros(n, dtype=bool)
    for r in reversed(rules):           # first rule in registry order wins
        for i in np.flatnonzero(fired[r.name]):
            reason[i] = r.name
        if not r.overridable:
            hard |= fired[r.name]
    auto = np.array([x is not None for x in reason], dtype=bool)
    keep = ~auto
    restored = 0
    if opts.use_review and "review_decision" in _columns(df):
        decision = [None if v is None else str(v).lower() for v in _values(df, "review_decision")]
        want_keep = np.array([v == "keep" for v in decision], dtype=bool)
        want_reject = np.array([v == "reject" for v in decision], dtype=bool)
        blocked = want_keep & hard
        if blocked.any():
            log.warning("%d sample(s) tagged keep cannot be kept: %s", int(blocked.sum()),
                        ", ".join(sorted({reason[i] for i in np.flatnonzero(blocked)})))
        restore = want_keep & auto & ~hard
        restored = int(restore.sum())
        for i in np.flatnonzero(restore):
            reason[i] = None
        for i in np.flatnonzero(want_reject & ~auto):
            reason[i] = REVIEWER
        keep = np.array([x is None for x in reason], dtype=bool)
    return Verdict(keep=keep, reason=reason, fired=fired, restored=restored, rules=[r.name for r in rules],
                   handed=handed)


def _duplicates_now(df: Table, fired: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[int, list[int]]]:
    """The duplicates given the other rules as they fire now, and the groups whose keeper changed.

    In each group the best-ranked copy (`dup_rank`, from dedupe) that no other automatic rule rejects
    stays. Dedupe chose its keeper with the flags of its time; when a flag set since (`score
    --rethreshold`) rejects it, the next copy takes over (returned as new keeper -> the copies it
    replaces, which keep their own reject reason), so a photo is never lost to both rules at once.
    (A reviewer's reject is about the picture, which its copies share: it hands nothing over.)"""
    dup = fired["duplicate"].copy()
    handed: dict[int, list[int]] = {}
    cols = _columns(df)
    if "dup_group" not in cols:
        return dup, handed
    other = np.zeros(len(df), dtype=bool)
    for name, mask in fired.items():
        if name != "duplicate":
            other |= mask
    if "dup_rank" in cols:
        rank = np.array([np.inf if v is None else float(v) for v in _values(df, "dup_rank")], dtype=float)
    else:  # written before dup_rank: the keeper first
        keeper = _bool(df, "dup_keeper") if "dup_keeper" in cols else np.zeros(len(df), dtype=bool)
        rank = np.where(keeper, 0.0, 1.0)
    groups = np.array([np.nan if v is None else float(v) for v in _values(df, "dup_group")], dtype=float)
    for g in np.unique(groups[~np.isnan(groups)]):
        members = sorted(np.flatnonzero(groups == g), key=lambda i: (rank[i], i))
        survivor = next((i for i in members if not other[i]), None)
        if survivor is None or survivor == members[0]:
            continue                      # dedupe's keeper stays (or every copy is rejected anyway)
        before = members[: members.index(survivor)]
        dup[members] = True
        dup[survivor] = False
        dup[before] = False               # rejected for their own reason
        handed[int(survivor)] = [int(i) for i in before]
    return dup, handed


def _hand_over(df: pd.DataFrame, v: Verdict) -> pd.DataFrame:
    """Keep dedupe's columns consistent with a keeper that changed (see `_duplicates_now`)."""
    if not v.handed:
        return df
    df = df.copy()
    cols = {c: df.columns.get_loc(c) for c in ("is_duplicate", "dup_keeper", "dup_reason") if c in df.columns}
    ids, paths = df["sample_id"].astype(str).tolist(), df["path"].astype(str).tolist()
    for new, olds in v.handed.items():
        first = olds[0]
        if "is_duplicate" in cols:
            df.iloc[new, cols["is_duplicate"]] = False
            df.iloc[olds, cols["is_duplicate"]] = True
        if "dup_keeper" in cols:
            df.iloc[new, cols["dup_keeper"]] = True
            df.iloc[olds, cols["dup_keeper"]] = False
        if "dup_reason" in cols:
            df.iloc[new, cols["dup_reason"]] = (f"kept: {ids[first]} ({paths[first]}), the copy dedupe chose, "
                                                f"is rejected as {v.reason[first]}")
            for i in olds:
                df.iloc[i, cols["dup_reason"]] = f"duplicate of {ids[new]} ({paths[new]}); handed over, rejected as {v.reason[i]}"
    return df


@dataclass
class FilterResult:
    kept: int
    total: int
    removed: dict[str, int] = field(default_factory=dict)   # reason -> rows it removed
    restored: int = 0                                        # auto-rejected, kept by the reviewer
    rules: list[str] = field(default_factory=list)
    out_path: Path | None = None

    def table_rows(self, titles_: dict[str, str] | None = None) -> list[tuple[str, int]]:
        titles_ = titles_ or {}
        rows = [("samples", self.total)]
        rows += [(f"removed: {titles_.get(k, k)} ({k})", v) for k, v in self.removed.items()]
        if self.restored:
            rows.append(("restored by reviewer", self.restored))
        rows.append(("kept", self.kept))
        return rows


def _rebase_paths(df: pd.DataFrame, src_folder: Path, dst_folder: Path) -> pd.DataFrame:
    """Cache paths are relative to the manifest's folder; re-point them for a manifest elsewhere."""
    import pandas as pd

    if src_folder.resolve() == dst_folder.resolve():
        return df
    df = df.copy()
    for col in [c for c in df.columns if c.endswith("_path") and c != "path"]:
        def move(v):
            if not present(v) or os.path.isabs(str(v)):
                return v
            return Path(os.path.relpath(src_folder / str(v), dst_folder)).as_posix()
        df[col] = pd.Series([move(v) for v in df[col].tolist()], index=df.index, dtype=df[col].dtype)
    return df


def _warn_missing(m: Manifest) -> None:
    """Say which rules cannot apply: stages that have not run, or whose columns are missing."""
    ran = {rec.get("stage") for rec in m.history}
    cols = set(m.df.columns)
    for stage, col in (("detect", "detect_status"), ("score", None), ("dedupe", "is_duplicate")):
        if stage not in ran and not (col and col in cols) and not (stage == "score" and flag_checks(cols)):
            log.warning("`curate %s` has not run on this manifest: its rules do not apply", stage)
        elif col and col not in cols:
            log.warning("the manifest lacks %s (written by `curate %s`): that rule does not apply", col, stage)
    thresholds = (m.stage_params("score") or {}).get("thresholds", {})
    lost = [f"{c}_flag" for c in thresholds if f"{c}_flag" not in cols]
    if lost:
        log.warning("the manifest lacks %s (written by `curate score`): those rules do not apply", ", ".join(lost))


@locks_manifest()
def filter_manifest(manifest_path: Path, out_path: Path | None = None,
                    opts: FilterOptions = FilterOptions()) -> FilterResult:
    """Write `keep`/`reject_reason` into the manifest and the kept rows to `out_path`.

    `out_path` defaults to `clean.parquet` beside the manifest. Both writes are atomic; the
    rules applied are recorded in the provenance of both files.
    """
    manifest_path = Path(manifest_path)
    out_path = Path(out_path) if out_path is not None else manifest_path.parent / "clean.parquet"
    if out_path.resolve() == manifest_path.resolve():
        raise UserError(f"-o {out_path}: must differ from --manifest (the manifest keeps every row)")
    m = read_manifest(manifest_path)
    beside = os.path.realpath(out_path.parent) == os.path.realpath(m.folder)   # scans skip manifests there
    if m.root and is_within(out_path.parent, m.root) and not beside:
        raise UserError(f"-o {out_path}: inside the scanned folder {m.root}, whose next scan would take it "
                        "for a photo; put it beside the manifest or outside that folder")
    import pandas as pd

    _warn_missing(m)
    v = decide(m.df, opts)
    df = _hand_over(m.df.reset_index(drop=True), v)
    df["keep"] = pd.array(v.keep, dtype="boolean")
    df["reject_reason"] = pd.array(v.reason, dtype="string")
    params = {"rules": v.rules, "disabled": sorted(opts.disabled), "use_review": opts.use_review,
              "out": str(out_path)}
    m.df = df
    write_manifest(m, manifest_path, stage="filter", params=params, input_path=manifest_path)

    kept = df[v.keep].reset_index(drop=True)
    kept = _rebase_paths(kept, manifest_path.parent, out_path.parent)
    clean = Manifest(df=kept, root=m.root, history=list(m.history))
    write_manifest(clean, out_path, stage="filter", params=params, input_path=manifest_path)

    counts = pd.Series([r for r in v.reason if r is not None], dtype="string").value_counts()
    order = [*v.rules, REVIEWER]
    removed = {k: int(counts[k]) for k in order if k in counts.index}
    log.info("kept %d of %d", int(v.keep.sum()), len(df))
    return FilterResult(kept=int(v.keep.sum()), total=len(df), removed=removed, restored=v.restored,
                        rules=v.rules, out_path=out_path)
