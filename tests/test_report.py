"""`curate report`: the page parses, every image it links exists and decodes, counts match the filter."""
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from curate import cli
from curate.contact_sheet import SheetOptions, contact_sheet
from curate.filter import filter_manifest
from curate.report import ReportOptions, write_report
from manifests import file_sha256, read_manifest, sample_id, write_manifest


class Page(HTMLParser):
    """Collects <img src>, <a href>, table cells and headings; fails on unbalanced tags."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.images, self.links, self.tables, self.h3, self.stack = [], [], [], [], []
        self._text = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if tag == "table":
            self.tables.append([])
        if tag == "tr":
            self.tables[-1].append([])
        if tag in ("td", "th", "h3"):
            self._text = ""
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> (open: {self.stack[-3:]})"
        self.stack.pop()
        if tag == "td":
            self.tables[-1][-1].append(self._text)
        if tag == "h3":
            self.h3.append(self._text)
        if tag in ("td", "th", "h3"):
            self._text = None

    def handle_data(self, data):
        if self._text is not None:
            self._text += data


def parse(index: Path) -> Page:
    page = Page()
    page.feed(index.read_text(encoding="utf-8"))
    page.close()
    assert page.stack == [], f"unclosed tags {page.stack}"
    return page


def counts_table(page: Page) -> dict[str, int]:
    """reason -> samples, from the first table (reason, what, samples, share)."""
    return {row[0]: int(row[2]) for row in page.tables[0] if row}


def make_manifest(tmp_path: Path, caltech: Path | None, n_gen: int = 6) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    files = []
    if caltech is not None:
        for f in sorted(caltech.glob("*.jpg"))[:10]:
            shutil.copy(f, root / f.name)
            files.append(root / f.name)
    rng = np.random.default_rng(0)
    for i in range(n_gen):
        p = root / f"gen_{i}.png"
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(p)
        files.append(p)
    broken = root / "broken.jpg"
    broken.write_bytes(b"<html>not a photo</html>")
    files.append(broken)
    rows = []
    for p in files:
        sha = file_sha256(p)
        rows.append({"sample_id": sample_id(sha, p.name, 0), "path": p.name, "crop_index": 0,
                     "status": "not_an_image" if p == broken else "ok", "sha256": sha})
    df = pd.DataFrame(rows)
    n = len(df)
    df["detect_status"] = ["not_decodable" if s != "ok" else ("no_motorbike" if i % 5 == 4 else "ok")
                           for i, s in enumerate(df["status"])]
    df["is_duplicate"] = pd.array([i % 7 == 3 for i in range(n)], dtype="boolean")
    df["blur_score"] = rng.random(n).astype("float32")
    df["blur_flag"] = pd.array(df["blur_score"] > 0.7, dtype="boolean")
    df["busy_score"] = rng.random(n).astype("float32")
    df["busy_flag"] = pd.array(df["busy_score"] > 0.8, dtype="boolean")
    df["dark_flag"] = pd.array([False] * n, dtype="boolean")   # a check without a score column
    path = tmp_path / "work" / "manifest.parquet"
    write_manifest(df, path, stage="score", params={}, root=str(root))
    return path


def check_links(index: Path, page: Page) -> None:
    assert page.images, "the page shows no images"
    text = index.read_text()
    for src in [*page.images, *page.links]:
        assert not re.match(r"^[a-z]+://", src), f"not self-contained: {src}"
        if src.startswith("#"):          # a link within the page: its target must be on it
            assert f'id="{src[1:]}"' in text, f"{src} is linked but not on the page"
            continue
        target = index.parent / src
        assert target.is_file(), f"{src} is linked but missing"
        if src.endswith(".png"):
            with Image.open(target) as im:
                im.verify()


@pytest.mark.slow
def test_report_after_filter(tmp_path, caltech, capsys):
    path = make_manifest(tmp_path, caltech)
    res = filter_manifest(path, tmp_path / "clean.parquet")
    out = tmp_path / "report"
    try:
        cli.main(["report", "--manifest", str(path), "-o", str(out), "--per-sheet", "5"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "index.html" in capsys.readouterr().out
    index = out / "index.html"
    page = parse(index)
    check_links(index, page)

    table = counts_table(page)
    assert table["all samples"] == res.total
    assert table["kept"] == res.kept
    assert {k: v for k, v in table.items() if k not in ("all samples", "kept")} == res.removed
    # one sheet for the kept samples and one per reason that removed something
    sheets = sorted(s for s in page.images if s.startswith("sheet_"))
    assert sheets == sorted(["sheet_kept.png", *[f"sheet_{r}.png" for r in res.removed]])
    # histograms for checks with a score column (dark has none)
    assert sorted(s for s in page.images if s.startswith("hist_")) == ["hist_blur.png", "hist_busy.png"]
    # capped sheets: at most 5 tiles, i.e. 5 columns of 128 + 4 px
    with Image.open(out / "sheet_kept.png") as im:
        shown = min(res.kept, 5)
        assert im.size == (shown * 132 + 4, 128 + 14 + 4 + 4)
    assert "filter has not been run" not in index.read_text()


def test_report_without_filter_uses_default_rules(tmp_path):
    path = make_manifest(tmp_path, None, n_gen=8)
    before = file_sha256(path)
    index = write_report(path, tmp_path / "r", ReportOptions(per_sheet=3, tile=64, cols=3))
    page = parse(index)
    check_links(index, page)
    assert "filter has not been run" in index.read_text()
    assert file_sha256(path) == before        # the report never writes the manifest
    table = counts_table(page)
    assert table["unreadable"] == 1 and table["all samples"] == 9
    assert sum(v for k, v in table.items() if k != "all samples") == 9


def test_contact_sheet_tiles_and_broken_files(tmp_path):
    ok = tmp_path / "a.png"
    Image.new("RGB", (300, 100), (255, 0, 0)).save(ok)
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"\xff\xd8\xff broken")
    out = contact_sheet([(ok, "red"), (bad, "broken"), (tmp_path / "missing.png", "gone")],
                        tmp_path / "s.png", SheetOptions(tile=50, cols=2, pad=2, caption_h=10))
    with Image.open(out) as im:
        assert im.size == (2 * 52 + 2, 2 * 62 + 2)
        px = np.asarray(im.convert("RGB"))
    # the red photo is fitted into the first 50x50 tile (50x17, centred vertically)
    assert tuple(px[2 + 25, 2 + 25]) == (255, 0, 0)
    assert tuple(px[2 + 2, 2 + 25]) == (255, 255, 255)
    # the broken and the missing file get grey tiles
    assert tuple(px[2 + 5, 54 + 45]) == (200, 200, 200)
    assert tuple(px[64 + 5, 2 + 45]) == (200, 200, 200)


def test_report_never_lands_among_the_users_files(tmp_path, curate_cli):
    path = make_manifest(tmp_path, None, n_gen=3)
    photos = tmp_path / "photos"
    before = {p.name: file_sha256(p) for p in photos.iterdir()}
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "index.html").write_text("my own page")
    (tmp_path / "a_file").write_text("x")
    for out, says in ((photos, "holds other files"), (photos / "report", "inside the scanned folder"),
                      (notes, "holds other files"), (tmp_path / "a_file", "is a file"),
                      (tmp_path / "a_file" / "sub", "cannot create the folder")):
        code, _, err = curate_cli(["report", "--manifest", str(path), "-o", str(out)])
        assert code == 2 and says in err and err.count("\n") == 1, (out, err)
    assert {p.name: file_sha256(p) for p in photos.iterdir()} == before
    assert (notes / "index.html").read_text() == "my own page"
    # its own folder, and an earlier report, are fine; temp files an interrupted report left go
    default = path.parent / "report"
    assert curate_cli(["report", "--manifest", str(path)])[0] == 0
    (default / ".hist_busy.png.abc123.png").write_bytes(b"half")
    (default / "sheet_gone.png").write_bytes(b"a sheet of an earlier report")
    assert curate_cli(["report", "--manifest", str(path), "-o", str(default)])[0] == 0
    assert not (default / ".hist_busy.png.abc123.png").exists()
    assert not (default / "sheet_gone.png").exists(), "an earlier report's sheet would show stale samples"
    killed = tmp_path / "killed"                   # a report killed while writing its first file
    killed.mkdir()
    (killed / ".index.html.x1y2z3.tmp").write_text("<!DOCTYPE html>")
    assert curate_cli(["report", "--manifest", str(path), "-o", str(killed)])[0] == 0
    assert sorted(p.name for p in killed.glob(".*")) == []


def test_report_shows_the_verdict_filter_gives_now_and_missing_images(tmp_path):
    from curate.score import reflag

    path = make_manifest(tmp_path, None, n_gen=8)
    m = read_manifest(path)
    m.history[-1]["params"] = {"thresholds": {"busy": 0.8}}     # as if `curate score` wrote it
    write_manifest(m, path, stage="score", params={"thresholds": {"busy": 0.8}})
    res = filter_manifest(path, tmp_path / "clean.parquet")
    index = write_report(path, tmp_path / "r")
    assert "another verdict" not in index.read_text() and counts_table(parse(index))["kept"] == res.kept
    reflag(path, {"busy": 0.0})                                  # every readable sample flagged busy now
    (tmp_path / "photos" / "gen_0.png").unlink()
    index = write_report(path, tmp_path / "r")
    text = index.read_text()
    table = counts_table(parse(index))
    assert table["kept"] == 0 and f"{res.kept} sample(s) have another verdict" in text
    assert "1 sample image(s) are missing" in text and "gen_0.png" in text


def test_front_page_strips_and_agreement_with_tags_and_labels(tmp_path):
    """Per reason a strip of examples; agreement with the reviewer's tags and a person's labels."""
    path = make_manifest(tmp_path, None, n_gen=8)
    m = read_manifest(path)
    df = m.df
    paths = df["path"].astype(str).tolist()
    # the reviewer tags two samples; the person labels every sample keep except the first
    df["review_decision"] = pd.array(["reject", "keep"] + [None] * (len(df) - 2), dtype="string")
    write_manifest(m, path, stage="review")
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n" + "".join(f"{p},{'no_motorbike' if i == 0 else 'keep'}\n"
                                               for i, p in enumerate(paths)))
    index = write_report(path, tmp_path / "r", ReportOptions(per_sheet=3, tile=64, cols=3, labels=labels))
    page = parse(index)
    check_links(index, page)
    text = index.read_text()
    strips = [s for s in page.images if s.startswith("strip_")]
    assert "strip_kept.png" in strips and "strip_unreadable.png" in strips
    assert "Agreement with your review tags" in text and "Agreement with labels in labels.csv" in text
    from curate.filter import decide

    v = decide(read_manifest(path).df)
    section = text.split("Agreement with labels in labels.csv")[1]
    assert f"<td>keep recall</td><td>{int(v.keep[1:].sum())} of {len(df) - 1}</td>" in section
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nnot/there.png,keep\n")
    index = write_report(path, tmp_path / "r2", ReportOptions(per_sheet=3, tile=64, cols=3, labels=bad))
    assert "not in the manifest" in index.read_text()
