"""Large JPEGs decoded at a DCT scale (`curate.decoded`): the photo's own size, EXIF turns, the part
pixel at the edge, score values within the stated tolerance, hashes and exact copies kept."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from curate import checks
from curate.decoded import Decoded, dct_scale, load
from curate.dedupe import DedupeOptions, dedupe_manifest
from curate.hashing import at_hash_scale, parse_signature, pixel_signature
from manifests import read_manifest
from tests.test_dedupe import by_path, make_manifest, photo

# What a DCT-scale decode may move a score's raw value by, against a full decode, on the web
# photos of >= 512 px (README, docs/architecture.md): relative for blur, absolute for the rest.
BLUR_REL, OTHER_ABS = 0.25, 0.05


def bars(size) -> Image.Image:
    """Sharp-edged vertical and horizontal bars up to every edge: a misplaced edge pixel shows."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([((xx // 48) % 2) * 255, ((yy // 36) % 2) * 255, (xx * 255 // w)], axis=2)
    return Image.fromarray(a.astype(np.uint8))


def signature_gap(a: str, b: str) -> int:
    wa, ha, ta = parse_signature(a)
    wb, hb, tb = parse_signature(b)
    assert (wa, ha) == (wb, hb)
    return int(np.abs(ta.astype(int) - tb.astype(int)).max())


def sig(img) -> str:
    img = at_hash_scale(img)
    return pixel_signature(img, img.convert("L"))


def test_dct_scale_keeps_the_longer_side_at_least():
    assert dct_scale((1600, 1200), 256) == 4          # 400 px; 1/8 would be 200
    assert dct_scale((2048, 300), 256) == 8
    assert dct_scale((511, 400), 256) == 1 and dct_scale((512, 400), 256) == 2
    assert dct_scale((4000, 6), 256) == 4             # never below one pixel across


def test_a_large_jpeg_is_decoded_smaller_and_knows_its_own_size(tmp_path):
    bars((1201, 803)).save(tmp_path / "a.jpg", quality=92)
    full, small = load(tmp_path / "a.jpg"), load(tmp_path / "a.jpg", at_least=256)
    assert full.size == small.size == (1201, 803) and not full.reduced
    assert small.scale == 4 and small.image.size == (301, 201)            # ceil(1201 / 4)
    assert small.region == (0, 0, 1201 / 4, 803 / 4)                      # the last pixel is a quarter
    bars((1201, 803)).save(tmp_path / "a.png")
    png = load(tmp_path / "a.png", at_least=256)
    assert not png.reduced and png.size == (1201, 803)                    # only JPEGs are
    small_one = tmp_path / "b.jpg"
    bars((500, 300)).save(small_one)
    assert not load(small_one, at_least=256).reduced                      # not twice the side


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_turn_puts_the_part_pixel_where_it_belongs(tmp_path, orientation):
    """The photo at 1/8 (its last column and row stand for 1/8 of a pixel) under each EXIF
    orientation: its own size is the turned one, and reduced further it is the full decode reduced
    (LANCZOS to 1/16), which it is far from with the part pixel left at the right and bottom."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    bars((1025, 777)).save(tmp_path / "t.jpg", quality=95, exif=exif)
    small, full = load(tmp_path / "t.jpg", at_least=64), load(tmp_path / "t.jpg")
    turned = orientation in (5, 6, 7, 8)
    assert small.size == full.size == full.image.size == ((777, 1025) if turned else (1025, 777))
    assert small.scale == 8 and small.image.size == tuple(-(-v // 8) for v in small.size)
    w, h = small.size
    target, lanczos = (w // 16, h // 16), Image.Resampling.LANCZOS

    def gap(d: Decoded) -> float:
        return float(np.abs(np.asarray(d.resize(target, lanczos), dtype=float)
                            - np.asarray(full.image.resize(target, lanczos), dtype=float)).mean())

    assert gap(small) < 4
    if orientation not in (1, 5):                     # the turns that move the part pixel
        assert gap(Decoded(small.image, small.size, (0, 0, w / 8, h / 8), 8)) > 8


def test_an_exact_copy_in_another_format_stays_an_exact_duplicate(tmp_path):
    """A large JPEG (decoded at 1/4) and a PNG of its full decode (reduced by box averages):
    the same picture, within the signature's tolerance."""
    root = tmp_path / "photos"
    root.mkdir()
    photo(3, (1400, 900)).save(root / "big.jpg", quality=93)
    load(root / "big.jpg").image.save(root / "big_copy.png")
    photo(4, (1400, 900)).save(root / "other.jpg", quality=93)
    mp = make_manifest(tmp_path, root, ["big.jpg", "big_copy.png", "other.jpg"])
    dedupe_manifest(mp, DedupeOptions(workers=1), progress=False)
    rows = by_path(read_manifest(mp))
    assert rows["big.jpg"]["dup_group"] == rows["big_copy.png"]["dup_group"] is not None
    loser = "big.jpg" if rows["big_copy.png"]["dup_keeper"] else "big_copy.png"
    assert rows[loser]["dup_reason"].startswith("same picture")
    assert rows["other.jpg"]["dup_group"] is None or rows["other.jpg"]["dup_group"] != rows["big.jpg"]["dup_group"]
    assert rows["big.jpg"]["pixel_hash"].startswith("1400x900-")          # the photo's own size


def _large_web_jpegs(shared_data, n=None):
    out = []
    for p in sorted((shared_data / "web").rglob("*")):
        if p.suffix.lower() in (".jpg", ".jpeg"):
            with Image.open(p) as im:
                if im.format == "JPEG" and max(im.size) >= 512:
                    out.append(p)
    return out[:n] if n else out


def test_score_values_of_large_web_photos_stay_within_the_stated_tolerance(shared_data):
    photos = _large_web_jpegs(shared_data)
    assert len(photos) >= 50
    worst = {"blur": 0.0, "busy": 0.0, "dark": 0.0, "bright": 0.0, "grey": 0.0}
    for p in photos:
        small, full = load(p, at_least=checks.MEASURE_SIDE), load(p)
        assert small.reduced, p.name
        a, b = checks.measure_sample(small), checks.measure_sample(full)
        assert a["aspect"] == b["aspect"] and a["subject_frac"] == b["subject_frac"]
        worst["blur"] = max(worst["blur"], abs(a["blur"] - b["blur"]) / b["blur"])
        for k in ("busy", "dark", "bright", "grey"):
            worst[k] = max(worst[k], abs(a[k] - b[k]))
    assert worst["blur"] <= BLUR_REL, worst
    assert all(worst[k] <= OTHER_ABS for k in ("busy", "dark", "bright", "grey")), worst
    assert worst["blur"] > 0                                                # they were decoded otherwise


def test_score_hands_dedupe_the_hashes_dedupe_makes_of_large_photos(tmp_path, shared_data, caplog):
    """Large web JPEGs and a PNG copy of one: score's hand-off gives the manifest that dedupe's own
    decodes give (both at `HASH_DECODE_SIDE`)."""
    from tests.test_decode_once import DEDUPE_COLUMNS, _assert_same, _both_ways

    photos = _large_web_jpegs(shared_data, 12)
    root = tmp_path / "photos"
    root.mkdir()
    for p in photos:
        shutil.copy(p, root / p.name)
    load(photos[0]).image.save(root / "copy.png")
    mp = make_manifest(tmp_path, root, sorted(p.name for p in root.iterdir()))
    with_h, n_with, without, _ = _both_ways(mp.parent, caplog)
    score_cols = [c for c in with_h.columns if c.endswith(("_raw", "_score", "_flag"))]
    _assert_same(with_h, without, (*DEDUPE_COLUMNS, *score_cols))
    assert n_with == 0
    rows = {r["path"]: r for r in with_h.to_dict("records")}
    assert rows["copy.png"]["dup_group"] == rows[photos[0].name]["dup_group"] is not None


def test_values_measured_from_another_decode_are_measured_again(tmp_path, caplog):
    """A manifest scored by a version that decoded every photo at full size (no `decode` in its
    params) is measured afresh; one scored so is reused."""
    from curate.score import ScoreOptions, score_manifest
    from manifests import write_manifest

    root = tmp_path / "photos"
    root.mkdir()
    for k in range(3):
        photo(20 + k, (1100, 700)).save(root / f"p{k}.jpg", quality=90)
    mp = make_manifest(tmp_path, root, ["p0.jpg", "p1.jpg", "p2.jpg"])

    def measured() -> str:
        caplog.clear()
        with caplog.at_level("INFO", logger="curate.score"):
            score_manifest(mp, ScoreOptions(workers=1), progress=False)
        return caplog.text

    measured()
    assert "0 row(s) to measure, 3 reused" in measured()
    m = read_manifest(mp)
    params = dict(m.stage_params("score"))
    params.pop("decode")
    write_manifest(m, mp, stage="score", params=params, input_path=mp)
    assert "3 row(s) to measure, 0 reused" in measured()
