"""Numbered contact sheets of a folder's photos, for labelling them by eye (docs/labelling.md).

    .venv/bin/python benchmarks/label_sheets.py ../shared/data/web/bikes -o /tmp/sheets/bikes

Writes `sheet_NNN.png` (a grid of `--per-sheet` photos on a grey ground, so a photo's own edge shows,
each captioned `index: file name`) and `sheet_NNN.txt` (index -> file name, one per line). The sheets
show the photos only: no verdict of the tool is drawn on them, so labels made from them are not biased
by what the tool thinks.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate.contact_sheet import SheetOptions, contact_sheet  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


def natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def photos(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: natural_key(p.name))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--per-sheet", type=int, default=30)
    ap.add_argument("--cols", type=int, default=6)
    ap.add_argument("--tile", type=int, default=220)
    a = ap.parse_args(argv)
    files = photos(a.folder)
    a.out.mkdir(parents=True, exist_ok=True)
    opts = SheetOptions(tile=a.tile, cols=a.cols, pad=6, caption_h=14, background=(128, 128, 128))
    for s in range(0, len(files), a.per_sheet):
        chunk = files[s:s + a.per_sheet]
        n = s // a.per_sheet
        items = [(p, f"{s + i}: {p.name}") for i, p in enumerate(chunk)]
        contact_sheet(items, a.out / f"sheet_{n:03d}.png", opts)
        (a.out / f"sheet_{n:03d}.txt").write_text("".join(f"{s + i}\t{p.name}\n" for i, p in enumerate(chunk)))
    print(f"{len(files)} photos on {(len(files) + a.per_sheet - 1) // a.per_sheet} sheets in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
