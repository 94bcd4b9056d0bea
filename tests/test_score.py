"""curate score: each check on synthetic crops with a known answer, real photos, reflag, resume, CLI."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFilter

from curate import checks
from curate.score import ScoreOptions, reflag, score_manifest
from manifests import read_manifest
from manifests.schema import score as score_schema
from tests.test_dedupe import by_path, make_manifest, photo


def test_schema_lists_every_registered_check():
    assert tuple(checks.CHECKS) == score_schema.CHECK_NAMES


def bike(bg: str, size=(300, 200), box=(60, 40, 240, 160), seed=0) -> Image.Image:
    """A 'bike' (dark wheels and frame) on a plain or a cluttered background."""
    rng = np.random.default_rng(seed)
    w, h = size
    if bg == "plain":
        img = Image.new("RGB", size, (245, 245, 245))
    else:   # street clutter: many small objects of every tone
        img = Image.new("RGB", size, (120, 120, 120))
        d = ImageDraw.Draw(img)
        for _ in range(2500):
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            d.rectangle([x, y, x + int(rng.integers(2, 12)), y + int(rng.integers(2, 12))],
                        fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box
    d.rectangle(box, fill=(200, 30, 30))
    r = (y1 - y0) // 3
    for cx in (x0 + r, x1 - r):
        d.ellipse([cx - r, y1 - 2 * r, cx + r, y1], outline=(10, 10, 10), width=6)
    return img


def raw_of(img, box=None, **kw):
    return checks.measure_sample(img, box, **kw)


def test_busy_outside_box_separates_plain_from_cluttered():
    box = (60, 40, 240, 160)
    plain = raw_of(bike("plain"), box)["busy"]
    busy = raw_of(bike("street"), box)["busy"]
    assert plain < 0.05
    assert busy > 0.5       # the measure separates; its default threshold flags only the extreme
    assert checks.CHECKS["busy"].score(plain) < checks.CHECKS["busy"].score(busy)
    # the bike itself does not count: a cluttered *subject* on a plain background stays calm
    img = bike("plain")
    ImageDraw.Draw(img).rectangle(box, fill=(0, 0, 0))
    for k in range(10):
        ImageDraw.Draw(img).line([60 + 18 * k, 40, 60 + 18 * k, 160], fill=(255, 255, 255), width=3)
    assert raw_of(img, box)["busy"] < 0.05
    # without a box: the border band of the image
    assert raw_of(bike("street"))["busy"] > 0.5 > 0.05 > raw_of(bike("plain"))["busy"]


def test_blur_dark_bright_grey_aspect_small_crowded():
    sharp = photo(1, (256, 180))
    blurred = sharp.filter(ImageFilter.GaussianBlur(4))
    assert raw_of(sharp)["blur"] > 5 * raw_of(blurred)["blur"]
    s = checks.score_all(raw_of(blurred))
    assert s["blur_flag"] is True and checks.score_all(raw_of(sharp))["blur_flag"] is False

    dark = Image.fromarray((np.asarray(sharp) * 0.15).astype(np.uint8))
    bright = Image.fromarray((255 - (255 - np.asarray(sharp)) * 0.1).astype(np.uint8))
    assert checks.score_all(raw_of(dark))["dark_flag"] is True
    assert checks.score_all(raw_of(bright))["bright_flag"] is True
    mid = checks.score_all(raw_of(Image.new("RGB", (100, 80), (128, 110, 100))))
    assert mid["dark_flag"] is False and mid["bright_flag"] is False

    grey_rgb = sharp.convert("L").convert("RGB")            # RGB mode, grey content
    assert checks.score_all(raw_of(grey_rgb))["grey_flag"] is True
    assert checks.score_all(raw_of(sharp))["grey_flag"] is False

    assert checks.score_all(raw_of(sharp.resize((600, 100))))["aspect_flag"] is True
    assert checks.score_all(raw_of(sharp.resize((100, 300))))["aspect_flag"] is True
    assert checks.score_all(raw_of(sharp.resize((200, 140))))["aspect_flag"] is False

    assert checks.score_all(raw_of(sharp, (10, 10, 50, 40), box_orig_side=40))["small_flag"] is True
    assert checks.score_all(raw_of(sharp, (10, 10, 250, 170), box_orig_side=400))["small_flag"] is False
    assert checks.score_all(raw_of(sharp))["small_flag"] is None     # no box: not measurable
    assert checks.score_all(raw_of(sharp, n_others=4))["crowded_flag"] is True
    assert checks.score_all(raw_of(sharp, n_others=1))["crowded_flag"] is False   # a rider, a passer-by
    for name, c in checks.CHECKS.items():
        for v in (0.0, 1e-6, 0.5, 3.0, 1e4):
            sc = c.score(v)
            assert 0.0 <= sc <= 1.0 and not math.isnan(sc), name


@pytest.fixture()
def scored_folder(tmp_path):
    """Photos with detect-stage crop columns (crops made with PIL) plus one without a crop."""
    root = tmp_path / "photos"
    root.mkdir()
    work = tmp_path / "work"
    (work / "cache" / "crops").mkdir(parents=True)
    extra = {}
    for name, bg in (("plain.png", "plain"), ("street.png", "street")):
        img = bike(bg, size=(400, 300), box=(100, 80, 300, 220))
        img.save(root / name)
        cb = [80, 66, 320, 234]
        img.crop(cb).save(work / "cache" / "crops" / name)
        dets = [{"label": "motorcycle", "conf": 0.9, "x0": 100.0, "y0": 80.0, "x1": 300.0, "y1": 220.0}]
        if bg == "street":
            dets += [{"label": "person", "conf": 0.8, "x0": 70.0, "y0": 60.0, "x1": 130.0, "y1": 200.0},
                     {"label": "car", "conf": 0.7, "x0": 250.0, "y0": 150.0, "x1": 330.0, "y1": 230.0},
                     {"label": "person", "conf": 0.7, "x0": 0.0, "y0": 0.0, "x1": 30.0, "y1": 40.0}]
        extra[name] = {"crop_path": f"cache/crops/{name}", "crop_box": cb,
                       "primary_box": [100.0, 80.0, 300.0, 220.0], "detections": dets,
                       "detect_status": "ok", "cut_off": False}
    photo(4).save(root / "nocrop.png")
    (root / "bad.jpg").write_bytes(b"GIF89a nope")
    mp = make_manifest(tmp_path, root, ["bad.jpg", "nocrop.png", "plain.png", "street.png"],
                       status={"bad.jpg": "corrupt"}, extra=extra)
    return root, mp


def test_score_manifest_columns_params_and_crops(scored_folder):
    root, mp = scored_folder
    score_manifest(mp, ScoreOptions(workers=1), progress=False)
    m = read_manifest(mp)
    rows = by_path(m)
    p, s = rows["plain.png"], rows["street.png"]
    assert p["busy_raw"] < 0.05 < 0.5 < s["busy_raw"]
    assert s["crowded_raw"] == 2.0 and p["crowded_raw"] == 0.0    # the far person is outside the crop
    assert abs(p["subject_frac"] - (200 * 140) / (240 * 168)) < 0.03
    assert p["score_source"] == "cache/crops/plain.png"
    assert abs(p["aspect_raw"] - 240 / 168) < 1e-3                # measured on the crop
    assert p["small_raw"] == 200.0
    n = rows["nocrop.png"]
    assert pd.isna(n["small_raw"]) and pd.isna(n["subject_frac"]) and not pd.isna(n["busy_raw"])
    b = rows["bad.jpg"]
    assert pd.isna(b["busy_raw"]) and pd.isna(b["blur_flag"]) and b["score_error"].startswith("not decodable")
    params = m.stage_params("score")
    assert set(params["thresholds"]) == set(checks.CHECKS)
    assert params["checks"]["busy"]["flag_when"] == "score >= threshold"
    for name in checks.CHECKS:
        assert m.df[f"{name}_score"].dropna().between(0, 1).all()


def test_reflag_needs_no_images(scored_folder):
    import shutil

    root, mp = scored_folder
    score_manifest(mp, ScoreOptions(workers=1), progress=False)
    shutil.rmtree(root)
    shutil.rmtree(mp.parent / "cache")
    before = by_path(read_manifest(mp))
    assert before["plain.png"]["busy_flag"] is False
    reflag(mp, {"busy": 0.0})
    m = read_manifest(mp)
    after = by_path(m)
    assert after["plain.png"]["busy_flag"] is True and pd.isna(after["bad.jpg"]["busy_flag"])
    assert after["plain.png"]["busy_raw"] == before["plain.png"]["busy_raw"]
    assert m.stage_params("score")["thresholds"]["busy"] == 0.0


def test_rerun_reuses_and_threshold_option(scored_folder):
    root, mp = scored_folder
    score_manifest(mp, ScoreOptions(workers=1), progress=False)
    (root / "street.png").unlink()                     # the crop is what is measured: still scored
    score_manifest(mp, ScoreOptions(workers=1, thresholds=(("busy", 1.0),)), progress=False)
    m = read_manifest(mp)
    assert by_path(m)["street.png"]["busy_flag"] is False
    assert m.stage_params("score")["thresholds"]["busy"] == 1.0


def test_cli_score_and_rethreshold(scored_folder, capsys):
    from curate.cli import main

    root, mp = scored_folder
    main(["score", "--manifest", str(mp), "--workers", "1", "--no-progress"])
    assert "busy" in capsys.readouterr().out
    main(["score", "--manifest", str(mp), "--rethreshold", "--threshold", "busy=0"])
    assert by_path(read_manifest(mp))["plain.png"]["busy_flag"] is True
    for bad in (["--threshold", "busy=2"], ["--threshold", "nosuch=0.5"], ["--rethreshold"]):
        with pytest.raises(SystemExit) as e:
            main(["score", "--manifest", str(mp), *bad])
        assert e.value.code == 2


def test_thresholds_set_by_the_user_are_remembered(scored_folder, curate_cli):
    """A `--rethreshold` must survive the next plain `curate score` (which `curate run` does)."""
    root, mp = scored_folder
    score_manifest(mp, ScoreOptions(workers=1), progress=False)
    assert by_path(read_manifest(mp))["street.png"]["busy_flag"] is False   # the default flags the extreme
    reflag(mp, {"busy": 0.5})
    score_manifest(mp, ScoreOptions(workers=1), progress=False)
    m = read_manifest(mp)
    assert m.stage_params("score")["thresholds"]["busy"] == 0.5 and by_path(m)["street.png"]["busy_flag"] is True
    code, out, _ = curate_cli(["score", "--manifest", str(mp), "--workers", "1", "--no-progress"])
    busy_line = next(line for line in out.splitlines() if line.strip().startswith("busy "))
    assert code == 0 and "threshold 0.50" in busy_line and "(set by you" in busy_line
    code, out, _ = curate_cli(["score", "--manifest", str(mp), "--default-thresholds", "--no-progress"])
    m = read_manifest(mp)
    assert m.stage_params("score")["thresholds"]["busy"] == checks.CHECKS["busy"].threshold
    assert by_path(m)["street.png"]["busy_flag"] is False and "set by you" not in out


def test_rescoring_a_reread_manifest_changes_no_score(scored_folder):
    """Scores come from float32-rounded raws, as stored: a rerun reusing them gives the same scores."""
    root, mp = scored_folder
    score_manifest(mp, ScoreOptions(workers=1), progress=False)
    first = read_manifest(mp).df
    score_manifest(mp, ScoreOptions(workers=1), progress=False)
    again = read_manifest(mp).df
    for name in checks.CHECKS:
        pd.testing.assert_series_equal(first[f"{name}_score"], again[f"{name}_score"])


def test_rows_that_cannot_be_measured_are_counted_and_rejected(scored_folder, curate_cli):
    from curate.filter import filter_manifest

    root, mp = scored_folder
    (mp.parent / "cache" / "crops" / "plain.png").unlink()      # a crop deleted from the cache
    code, out, _ = curate_cli(["score", "--manifest", str(mp), "--workers", "1", "--no-progress"])
    assert code == 0 and "1 row(s) could not be measured" in out   # plain.png (bad.jpg is no image)
    m = read_manifest(mp)
    assert by_path(m)["plain.png"]["score_error"].startswith("FileNotFoundError")
    filter_manifest(mp)
    rows = by_path(read_manifest(mp))
    assert rows["plain.png"]["keep"] is False and rows["plain.png"]["reject_reason"] == "not_measured"
    assert rows["bad.jpg"]["reject_reason"] == "unreadable"
    bike("plain", size=(400, 300), box=(100, 80, 300, 220)).crop([80, 66, 320, 234]).save(
        mp.parent / "cache" / "crops" / "plain.png")                # the crop rebuilt (`curate run` does)
    score_manifest(mp, ScoreOptions(workers=1), progress=False)    # measured again, without --force
    filter_manifest(mp)
    rows = by_path(read_manifest(mp))
    assert pd.isna(rows["plain.png"]["score_error"]) and rows["plain.png"]["reject_reason"] != "not_measured"


def test_an_empty_manifest_is_scored_and_deduped(tmp_path, curate_cli):
    from manifests import write_manifest

    root = tmp_path / "photos"
    root.mkdir()
    photo(1).save(root / "a.png")
    m = read_manifest(make_manifest(tmp_path, root, ["a.png"]))
    m.df = m.df.iloc[0:0]                      # e.g. a clean.parquet where nothing was kept
    mp = write_manifest(m, tmp_path / "work" / "clean.parquet", stage="filter")
    for stage in ("score", "dedupe"):
        code, out, err = curate_cli([stage, "--manifest", str(mp), "--no-progress"])
        assert code == 0 and "0 rows" in out, err


@pytest.mark.slow
def test_real_photos_whole_image(tmp_path, caltech, cctv):
    """Without detection: every real photo gets finite raws; the greyscale Caltech photos are grey."""
    import shutil

    root = tmp_path / "photos"
    root.mkdir()
    names = []
    for p in sorted(caltech.glob("*.jpg"))[::50] + sorted(cctv.glob("*.jpg"))[:4]:
        shutil.copy(p, root / p.name)
        names.append(p.name)
    greys = [p for p in sorted(caltech.glob("*.jpg")) if Image.open(p).mode == "L"][:3]
    for p in greys:
        shutil.copy(p, root / ("grey_" + p.name))
        names.append("grey_" + p.name)
    mp = make_manifest(tmp_path, root, sorted(names))
    score_manifest(mp, ScoreOptions(workers=2), progress=False)
    rows = by_path(read_manifest(mp))
    for n, r in rows.items():
        for c in ("busy", "blur", "dark", "bright", "aspect", "grey"):
            assert np.isfinite(r[f"{c}_raw"]), (n, c)
    assert all(rows["grey_" + p.name]["grey_flag"] is True for p in greys)


def test_odd_closeup_needs_a_frame_filling_box_and_an_unusual_picture():
    """The rank counts only where the box fills half the frame into a corner; without embeddings
    or a box there is nothing to say (null)."""
    base = {"width": 400, "height": 300, "primary_box": [0.0, 0.0, 300.0, 280.0], "box_area_frac": 0.7}
    assert checks.odd_closeup({**base, "outlier_rank": 0.9}) == pytest.approx(0.9)      # into a corner
    centred = {**base, "primary_box": [40.0, 30.0, 360.0, 270.0]}
    assert checks.odd_closeup({**centred, "outlier_rank": 0.9}) == 0.0                 # no corner
    assert checks.odd_closeup({**base, "box_area_frac": 0.3, "outlier_rank": 0.9}) == 0.0   # small box
    assert checks.odd_closeup({**base, "outlier_rank": None}) is None                    # not embedded
    assert checks.odd_closeup({**base, "primary_box": None, "outlier_rank": 0.9}) is None
    c = checks.CHECKS["odd_closeup"]
    assert c.score(0.9) >= c.threshold > c.score(0.5)


def test_closeup_spares_a_frame_filling_box_that_looks_like_the_folders_bikes():
    """A box filling the frame into a corner is a close-up unless the picture is among the folder's most
    ordinary (a tightly framed whole bike); without embeddings the fill alone decides."""
    base = {"width": 400, "height": 300, "primary_box": [0.0, 0.0, 390.0, 295.0], "box_area_frac": 0.96}
    c = checks.CHECKS["closeup"]
    assert c.score(checks.closeup({**base, "outlier_rank": 0.9})) >= c.threshold
    assert checks.closeup({**base, "outlier_rank": checks.CLOSEUP_RANK - 0.1}) == 0.0
    assert checks.closeup({**base, "outlier_rank": None}) == pytest.approx(0.96)
    assert checks.closeup({**base, "primary_box": [40.0, 30.0, 360.0, 270.0], "outlier_rank": 0.9}) == 0.0
    assert checks.closeup({**base, "primary_box": None}) is None
    assert checks.row_raw({**base, "outlier_rank": 0.1})["closeup"] == 0.0


def test_several_counts_other_bikes_not_looser_boxes_of_the_same_one():
    def det(x0, y0, x1, y1, label="motorcycle"):
        return {"label": label, "conf": 0.8, "x0": x0, "y0": y0, "x1": x1, "y1": y1}

    main = det(100, 100, 300, 250)
    row = {"primary_box": [100, 100, 300, 250], "detections": [main]}
    assert checks.second_bike(row) == 0.0
    loose = det(80, 60, 330, 280)                              # holds the main box: the bike with its rider
    part = det(150, 150, 220, 200)                             # inside the main box: a wheel
    other = det(400, 110, 560, 230)                            # beside it: another bike, 0.64 of its area
    car = det(0, 0, 600, 400, label="car")
    row["detections"] = [main, loose, part, car]
    assert checks.second_bike(row) == 0.0
    row["detections"] = [main, loose, part, other]
    assert checks.second_bike(row) == pytest.approx(160 * 120 / (200 * 150))
    assert checks.second_bike({"primary_box": None, "detections": []}) is None


def test_histogram_percentiles_equal_numpys_on_uint8_values():
    """The dark/bright/grey percentiles come from a 256-bin histogram; they equal np.percentile of the
    values / 255 (linear interpolation) to within float32 rounding, also for one value and constants."""
    rng = np.random.default_rng(7)
    cases = [rng.integers(0, 256, int(n)).astype(np.uint8) for n in rng.integers(1, 40000, 200)]
    cases += [np.array([17], np.uint8), np.full(999, 255, np.uint8), np.minimum(cases[0], 3).astype(np.uint8)]
    for v in cases:
        want = np.percentile(v.astype(np.float32) / 255.0, [5, 95, 99])
        got = checks.percentiles_u8(v, (5, 95, 99))
        assert np.allclose(got, want, rtol=0, atol=1e-7), (len(v), got, want)
