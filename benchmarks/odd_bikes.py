"""How well the `outlier` score finds the odd bikes a person marked, per embedding backend.

    .venv/bin/python benchmarks/odd_bikes.py [--data ../shared/data] [--work DIR]
        [--backend stats --backend tflite:MODEL.tflite --backend ultralytics:yolo11n.yaml] [--json out.json]

`curate run` (default options, the shared TFLite detector) runs on `web/` (resumed from
`--work DIR/web`, as `benchmarks/agreement.py --work DIR` leaves it); then, for each backend, `curate
embed --force` on a copy of its manifest. Among the web/bikes photos a person kept
(`benchmarks/labels/shared_data.csv`), `benchmarks/labels/odd_bikes.csv` marks the odd ones (made by
looking, docs/labelling.md). Ranked by `outlier_rank` (most unusual first), it prints the precision
of the top 5% (share of them marked odd), the recall of the marked ones at the top 5%, 10% and 20%,
what a random ranking gives, and the marked photos the top 5% holds.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.agreement import DEFAULT_DATA, DEFAULT_DETECTOR, DEFAULT_LABELS, run_set  # noqa: E402

ODD_LABELS = REPO / "benchmarks" / "labels" / "odd_bikes.csv"
# a .pt cannot be downloaded here: ultralytics runs a random-init model (mechanics; what noise gives)
BACKENDS = ("stats", f"tflite:{DEFAULT_DETECTOR}", "ultralytics:yolo11n.yaml")


def ranking(manifest: Path, kept: set[str]):
    """The person-kept photos (paths under web/) with their outlier rank, most unusual first."""
    from manifests import read_manifest

    df = read_manifest(manifest).df
    df = df[(df["crop_index"] == 0) & df["path"].astype(str).isin(kept)]
    return df[["path", "outlier_rank"]].sort_values(["outlier_rank", "path"], ascending=[False, True])


def figures(ranked, odd: set[str]) -> dict:
    n = len(ranked)
    paths = ranked["path"].astype(str).tolist()
    out = {"photos": n, "marked": len(odd & set(paths)), "base_rate": len(odd & set(paths)) / max(1, n)}
    for share in (0.05, 0.10, 0.20):
        top = paths[:max(1, round(share * n))]
        hits = sum(p in odd for p in top)
        out[f"top{int(share * 100)}"] = {"n": len(top), "hits": hits, "precision": hits / len(top),
                                         "recall": hits / max(1, out["marked"])}
    out["hits_in_top5"] = [p for p in paths[:out["top5"]["n"]] if p in odd]
    return out


def embed(manifest: Path, backend: str, into: Path) -> Path:
    from curate.embed import EmbedOptions, embed_manifest

    if into.exists():
        shutil.rmtree(into)
    shutil.copytree(manifest.parent, into, ignore=shutil.ignore_patterns("report"))
    name, _, weights = backend.partition(":")
    embed_manifest(into / manifest.name, EmbedOptions(backend=name, weights=weights or None, force=True),
                   progress=False)
    return into / manifest.name


def main(argv=None) -> int:
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--detector", default=str(DEFAULT_DETECTOR))
    ap.add_argument("--work", type=Path, help="keep the work folder here (resumed on a rerun)")
    ap.add_argument("--backend", dest="backends", action="append", help=f"default: {', '.join(BACKENDS)}")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not a.data.is_dir():
        print(f"--data {a.data}: not a folder (the shared photos are not on this machine)", file=sys.stderr)
        return 2
    labels = pd.read_csv(DEFAULT_LABELS)
    kept = {p[len("web/"):] for p in labels.loc[labels["label"] == "keep", "path"] if p.startswith("web/")}
    marks = pd.read_csv(ODD_LABELS)
    odd = {p[len("web/"):] for p in marks.loc[marks["odd"] == 1, "path"]}
    out = {}
    with tempfile.TemporaryDirectory(prefix="odd-bikes-") as tmp:
        manifest, secs = run_set(a.data / "web", (a.work or Path(tmp)) / "web", a.detector)
        print(f"curate run {a.data / 'web'}: {secs:.0f} s; {len(kept)} photos kept by the person, "
              f"{len(odd)} of them marked odd")
        for backend in a.backends or BACKENDS:
            f = figures(ranking(embed(manifest, backend, Path(tmp) / backend.replace(":", "_")), kept), odd)
            out[backend] = f
            t5, t10, t20 = f["top5"], f["top10"], f["top20"]
            label = f"tflite:{Path(backend).name}" if backend.startswith("tflite:") else backend
            print(f"{label:<26} top 5% ({t5['n']}): precision {100 * t5['precision']:.1f}%, recall "
                  f"{100 * t5['recall']:.1f}%; recall at 10% {100 * t10['recall']:.1f}%, at 20% "
                  f"{100 * t20['recall']:.1f}% (random: precision {100 * f['base_rate']:.1f}%, recall = the share)")
            print(f"{'':<26} marked odd in its top 5%: {', '.join(f['hits_in_top5']) or 'none'}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
