"""How far `curate run`'s verdicts agree with a person's labels on the real photos.

    .venv/bin/python benchmarks/agreement.py [--data ../shared/data] [--set web --set motorbikes]
        [--detector ../shared/assets/yolov8n_int8.tflite] [--work DIR] [--disagreements N]

For each set (a folder of `--data`: `web` = web/bikes + web/cars, `motorbikes` = Caltech + CCTV)
the whole pipeline runs with default options and the given detector into a fresh work folder
(or `--work DIR/<set>`, resumed), then its verdicts are compared with the labels in
`benchmarks/labels/shared_data.csv` (made by looking, docs/labelling.md): keep recall, reject
recall, each rule's precision and recall, and a confusion table, for the set and each subfolder.
`--manifest M --set NAME` compares an existing filtered manifest of that set instead of running.
`--calibrate N` then plays a reviewer who tags N random photos of the set by the labels (keep or
reject), runs `curate calibrate` and `curate filter` on a copy of the manifest, and prints the
agreement on the photos *not* tagged, before and after (held out: what calibrating buys).
`--between OTHER.csv` instead compares two people's labels of the same photos (how far persons
agree: `benchmarks/labels/second_opinion.csv` holds a second labeller's calls on 488 web photos).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curate.agreement import compare, format_agreement, read_labels  # noqa: E402
from manifests import read_manifest  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_DETECTOR = REPO.parent / "shared" / "assets" / "yolov8n_int8.tflite"
DEFAULT_LABELS = REPO / "benchmarks" / "labels" / "shared_data.csv"
SETS = ("web", "motorbikes")


def set_labels(labels, name: str):
    """The labels of set `name`, indexed by path relative to the set's folder."""
    pre = name + "/"
    sub = labels[labels["path"].str.startswith(pre)]
    return sub.set_index(sub["path"].str[len(pre):])["label"]


def run_set(folder: Path, work: Path, detector: str) -> tuple[Path, float]:
    from curate.pipeline import RunOptions, run_pipeline

    t0 = time.perf_counter()
    res = run_pipeline(folder, work, RunOptions(weights=detector, report=False), progress=False)
    return res.manifest, time.perf_counter() - t0


def evaluate(manifest: Path, labels, name: str, disagreements: int = 0) -> dict:
    df = read_manifest(manifest).df
    out = {}
    parts = [(name, labels)]
    subfolders = sorted({p.split("/", 1)[0] for p in labels.index if "/" in p})
    if len(subfolders) > 1:
        parts += [(f"{name}/{s}", labels[labels.index.str.startswith(s + "/")]) for s in subfolders]
    for title, lab in parts:
        ag = compare(df, lab)
        print(format_agreement(ag, f"== {title} =="))
        if disagreements and title == name and len(ag.disagreements):
            print(f"\nfirst {disagreements} disagreements (person label, tool verdict):")
            for r in ag.disagreements.head(disagreements).itertuples():
                print(f"  {r.label:<16} {r.tool:<18} {r.path}")
        print()
        out[title] = ag.as_dict()
    return out


def between(labels, other) -> None:
    """Keep/reject agreement of two label sets on the photos both labelled."""
    import pandas as pd

    j = labels.merge(other, on="path", suffixes=("", "_other"))
    a, b = j["label"] == "keep", j["label_other"] == "keep"
    print(f"photos labelled by both: {len(j)}; keep/reject agree on {100 * (a == b).mean():.1f}%")
    print(f"of the first's keeps, the other keeps {100 * (a & b).sum() / max(1, a.sum()):.1f}%; "
          f"of the first's rejects, the other rejects {100 * (~a & ~b).sum() / max(1, (~a).sum()):.1f}%")
    print(pd.crosstab(j["label"].rename("first"), j["label_other"].rename("other")).to_string())


def calibrate_demo(manifest: Path, labels, n: int, seed: int, tmp: Path) -> dict:
    """Tag `n` random labelled photos by the labels, calibrate a copy, compare on the other photos."""
    import shutil

    import numpy as np
    import pandas as pd

    from curate.calibrate import calibrate_manifest, format_calibration
    from curate.filter import FilterOptions, filter_manifest
    from manifests import write_manifest

    work = tmp / "calibrated"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(manifest.parent, work, ignore=shutil.ignore_patterns("report"))
    copy = work / manifest.name
    m = read_manifest(copy)
    df = m.df
    primary = np.flatnonzero((df["crop_index"] == 0).to_numpy() & df["path"].astype(str).isin(labels.index).to_numpy())
    picked = np.random.default_rng(seed).choice(primary, size=min(n, len(primary)), replace=False)
    tags = [None] * len(df)
    for i in picked:
        tags[i] = "keep" if labels[str(df["path"].iloc[i])] == "keep" else "reject"
    df["review_decision"] = pd.array(tags, dtype="string")
    m.df = df
    write_manifest(m, copy, stage="review", params={"simulated_from_labels": int(len(picked))})
    cal = calibrate_manifest(copy)
    print(f"curate calibrate on {len(picked)} photos tagged by the labels (seed {seed}):")
    print(format_calibration(cal))
    filter_manifest(copy, work / "clean.parquet", FilterOptions(use_review=False))
    held = labels[~labels.index.isin(set(df["path"].iloc[picked].astype(str)))]
    out = {}
    for name, path in (("defaults", manifest), ("calibrated", copy)):
        ag = compare(read_manifest(path).df, held)
        out[name] = ag.as_dict()
        print(f"held out ({ag.n} photos), {name:<10}: keep recall {100 * ag.keep_recall:5.1f}%, reject recall "
              f"{100 * ag.reject_recall:5.1f}%, balanced {50 * (ag.keep_recall + ag.reject_recall):5.1f}%")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    ap.add_argument("--detector", default=str(DEFAULT_DETECTOR))
    ap.add_argument("--set", dest="sets", action="append", choices=SETS,
                    help="which set(s) to run (default: all)")
    ap.add_argument("--work", type=Path, help="keep the work folders here (resumed on a rerun)")
    ap.add_argument("--manifest", type=Path, help="compare this filtered manifest (with one --set)")
    ap.add_argument("--disagreements", type=int, default=0, help="list this many disagreeing photos")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--between", type=Path, help="compare --labels with another labeller's CSV and stop")
    ap.add_argument("--calibrate", type=int, default=0, metavar="N",
                    help="also: tag N random photos by the labels, calibrate, report on the others")
    ap.add_argument("--seed", type=int, default=0, help="which photos --calibrate tags")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not a.data.is_dir():
        print(f"--data {a.data}: not a folder (the shared photos are not on this machine)", file=sys.stderr)
        return 2
    labels = read_labels(a.labels)
    if a.between:
        between(labels, read_labels(a.between))
        return 0
    sets = a.sets or list(SETS)
    if a.manifest and len(sets) != 1:
        print("--manifest needs exactly one --set", file=sys.stderr)
        return 2
    figures = {}
    with tempfile.TemporaryDirectory(prefix="agreement-") as tmp:
        for name in sets:
            lab = set_labels(labels, name)
            if a.manifest:
                manifest = a.manifest
            else:
                work = (a.work or Path(tmp)) / name
                manifest, secs = run_set(a.data / name, work, a.detector)
                print(f"curate run {a.data / name} ({len(lab)} labelled photos): {secs:.0f} s")
            figures.update(evaluate(manifest, lab, name, a.disagreements))
            if a.calibrate:
                figures[f"{name}/calibrate"] = calibrate_demo(manifest, lab, a.calibrate, a.seed, Path(tmp) / name)
    if a.json:
        a.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
