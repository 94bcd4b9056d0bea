"""Merge per-sheet label files into the labels CSV (docs/labelling.md).

    .venv/bin/python benchmarks/merge_labels.py --sheets /tmp/sheets/web_bikes \
        --labels /tmp/labels/web_bikes --prefix web/bikes -o benchmarks/labels/shared_data.csv

Each `sheet_NNN.txt` from `label_sheets.py` maps a tile's index to a file name; each labeller's
`sheet_NNN.tsv` holds `INDEX<TAB>LABEL[<TAB>NOTE]`. Every tile must be labelled exactly once with a
known label, or nothing is written. Rows of other prefixes already in the CSV are kept, rows of this
prefix are replaced, so folders can be merged one at a time.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate.agreement import LABELS  # noqa: E402


def sheet_labels(sheets: Path, labels: Path, prefix: str) -> list[dict]:
    rows, problems = [], []
    for index_file in sorted(sheets.glob("sheet_*.txt")):
        names = dict(line.split("\t", 1) for line in index_file.read_text().splitlines() if line)
        tsv = labels / (index_file.stem + ".tsv")
        if not tsv.exists():
            problems.append(f"{tsv}: missing")
            continue
        got: dict[str, tuple[str, str]] = {}
        for n, line in enumerate(tsv.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            idx, label = parts[0].strip(), parts[1].strip() if len(parts) > 1 else ""
            note = parts[2].strip() if len(parts) > 2 else ""
            if idx not in names:
                problems.append(f"{tsv}:{n}: index {idx} is not on the sheet")
            elif idx in got:
                problems.append(f"{tsv}:{n}: index {idx} labelled twice")
            elif label not in LABELS:
                problems.append(f"{tsv}:{n}: unknown label {label!r}")
            else:
                got[idx] = (label, note)
        for idx in names.keys() - got.keys():
            problems.append(f"{tsv}: index {idx} not labelled")
        rows += [{"path": f"{prefix}/{names[i]}", "label": got[i][0], "note": got[i][1]}
                 for i in sorted(got, key=int) if i in names]
    if problems:
        raise SystemExit("\n".join(problems[:20]) + (f"\n... {len(problems) - 20} more" if len(problems) > 20 else ""))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sheets", type=Path, required=True)
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--prefix", required=True, help="folder of the photos relative to ../shared/data")
    ap.add_argument("-o", "--out", type=Path, required=True)
    a = ap.parse_args(argv)
    prefix = a.prefix.strip("/")
    new = sheet_labels(a.sheets, a.labels, prefix)
    old = []
    if a.out.exists():
        with open(a.out, newline="", encoding="utf-8") as f:
            old = [r for r in csv.DictReader(f) if not r["path"].startswith(prefix + "/")]
    rows = sorted(old + new, key=lambda r: r["path"])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "note"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(a.out)
    counts: dict[str, int] = {}
    for r in new:
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    print(f"{prefix}: {len(new)} labels ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}) -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
