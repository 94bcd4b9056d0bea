"""`curate text`: the share of a photo under text lines, measured by the real PP-OCR text detector
(RapidOCR), and the `text` check and rule that read it."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from curate import text as text_stage
from curate.checks import TEXT_SHARE
from manifests import read_manifest
from tests.test_row_stage import _killed_then_resumed, _photos, _rerun_reused

CURATE = [sys.executable, "-c", "from curate.cli import main; main()"]

needs_detector = pytest.mark.skipif(not text_stage.available(), reason="rapidocr/onnxruntime not installed")


def _headline(img: Image.Image, words: str = "NEW BIKE LAUNCHED: PRICE 2,49,000") -> Image.Image:
    """`img` with a magazine headline in a red banner across its top, as scraped thumbnails have."""
    out = img.convert("RGB").copy()
    w, h = out.size
    d = ImageDraw.Draw(out)
    band = max(12, h // 10)         # a line of a headline, not one word in letters a sixth of the photo high
    d.rectangle([0, 0, w, band + 8], fill=(200, 20, 20))
    font = ImageFont.load_default(size=band)
    d.text((6, 4), words, fill=(255, 255, 255), font=font)
    return out


def _share(img: Image.Image) -> float:
    rgb = np.asarray(img.convert("RGB"))
    return text_stage.line_share(text_stage.text_lines(rgb), rgb.shape[1], rgb.shape[0])


def test_line_share_counts_overlaps_once_and_leaves_out_regions_too_thick_for_text():
    line = np.array([[0, 0], [50, 0], [50, 10], [0, 10]], np.float32)           # 50 x 10 of 100 x 100
    assert text_stage.line_share([line], 100, 100) == pytest.approx(0.0561, abs=0.002)   # fillPoly: ends inclusive
    assert text_stage.line_share([line, line], 100, 100) == text_stage.line_share([line], 100, 100)
    thick = np.array([[0, 0], [90, 0], [90, 60], [0, 60]], np.float32)          # a frame-filling outline
    assert text_stage.line_share([thick], 100, 100) == 0.0
    assert text_stage.line_share([], 100, 100) == 0.0


@needs_detector
def test_a_headline_is_found_and_a_plain_picture_is_not():
    rng = np.random.default_rng(0)
    plain = Image.fromarray(np.full((240, 320, 3), 235, np.uint8))
    ImageDraw.Draw(plain).ellipse([60, 80, 260, 220], fill=tuple(int(v) for v in rng.integers(0, 120, 3)))
    assert _share(plain) < TEXT_SHARE / 4
    assert _share(_headline(plain)) >= TEXT_SHARE


@needs_detector
def test_headlines_drawn_on_real_photos_are_found_and_the_photos_alone_are_not(caltech):
    photos = sorted(caltech.iterdir())[:6]
    for p in photos:
        img = Image.open(p)
        assert _share(img) < TEXT_SHARE, p.name
        assert _share(_headline(img)) >= TEXT_SHARE, p.name


@needs_detector
def test_the_stage_measures_reuses_and_the_text_rule_rejects_the_headline(tmp_path, caltech):
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted(caltech.iterdir())[:4]:
        shutil.copy(p, photos / p.name)
    _headline(Image.open(sorted(caltech.iterdir())[4])).save(photos / "advert.jpg", quality=92)
    (photos / "notes.txt").write_text("not a photo")
    m = tmp_path / "work" / "manifest.parquet"
    for args in (["scan", str(photos), "-o", str(m)], ["text", "--manifest", str(m)],
                 ["score", "--manifest", str(m)], ["filter", "--manifest", str(m)]):
        subprocess.run([*CURATE, *args, *(["--no-progress"] if args[0] != "filter" else [])], check=True,
                       capture_output=True, timeout=300)
    df = read_manifest(m).df.set_index("path")
    assert df.loc["advert.jpg", "text_share"] >= TEXT_SHARE
    assert df.loc["advert.jpg", "reject_reason"] == "text"
    plain = df.drop(index=["advert.jpg", "notes.txt"])
    assert (plain["text_share"] < TEXT_SHARE).all() and not (plain["reject_reason"] == "text").any()
    assert "not decodable" in df.loc["notes.txt", "text_error"]
    assert read_manifest(m).stage_params("text")["measured"] == 5
    assert _rerun_reused(["text", "--manifest", str(m), "--no-progress"], "row(s) to measure, ") == 6


def test_without_the_detector_the_stage_leaves_the_manifest_alone(tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 48), (10, 120, 30)).save(photos / "a.png")
    m = tmp_path / "work" / "manifest.parquet"
    subprocess.run([*CURATE, "scan", str(photos), "-o", str(m), "--no-progress"], check=True, capture_output=True)
    before = Path(m).read_bytes()
    monkeypatch.setattr(text_stage, "available", lambda: False)
    assert text_stage.text_manifest(m, progress=False) is None
    assert Path(m).read_bytes() == before


def _shares(manifest: Path) -> dict:
    df = read_manifest(manifest).df
    return dict(zip(df["sample_id"], df["text_share"].astype("Float64").fillna(-1.0)))


@needs_detector
def test_text_killed_mid_run_resumes_with_the_same_shares(tmp_path):
    photos = _photos(tmp_path / "photos", 200, size=(320, 240))
    ref, work = _killed_then_resumed("text", photos, tmp_path, "row(s) to measure, ")
    assert _shares(ref) == _shares(work)


@needs_detector
def test_a_large_jpeg_is_read_at_a_dct_scale_and_its_headline_share_kept(tmp_path):
    """A 1,600 px photo with a headline is decoded at 1/2 for the detector, which sees at most
    480 px anyway (`curate.decoded`): the share of the photo under text is what the full decode
    gives, to within a hundredth."""
    from curate.decoded import load
    from curate.text import text_chunk

    plain = Image.fromarray(np.full((1000, 1600, 3), 225, np.uint8))
    ImageDraw.Draw(plain).ellipse([300, 300, 1300, 900], fill=(40, 60, 90))
    _headline(plain).save(tmp_path / "big.jpg", quality=92)
    assert load(tmp_path / "big.jpg", at_least=text_stage.DETECT_SIDE).scale == 2
    job = {"sample_id": "a", "decoded": str(tmp_path / "big.jpg"), "usable": True}
    (rec,) = text_chunk([job])
    assert rec["text_share"] >= TEXT_SHARE
    assert rec["text_share"] == pytest.approx(_share(load(tmp_path / "big.jpg").image), abs=0.01)
