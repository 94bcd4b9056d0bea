"""`curate repair`: the zoo's repairs, what the copies look like, resume, options, frames."""
from __future__ import annotations

import io
import itertools
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile, ImageFilter

from curate.cli import main as curate_main
from curate.frames import best_frame
from curate.normalise import decoded_row_fraction, truncated_images_allowed
from curate.repair import RepairOptions, repair_manifest
from curate.scan import scan_folder
from manifests import UserError, file_sha256, read_manifest
from tests.zoo import make_zoo, picture


def _originals(root: Path) -> dict[str, str]:
    out = {}
    for p in root.rglob("*"):
        st = p.lstat()
        if stat.S_ISREG(st.st_mode):
            try:
                out[p.relative_to(root).as_posix()] = file_sha256(p)
            except PermissionError:
                continue
    return out


@pytest.fixture(scope="module")
def repaired_zoo(tmp_path_factory):
    base = tmp_path_factory.mktemp("repair-zoo")
    root = base / "zoo"
    expected = make_zoo(root)
    before = _originals(root)
    mpath = base / "work" / "manifest.parquet"
    scan_folder(root, mpath, workers=2, progress=False)
    m = repair_manifest(mpath, workers=2, progress=False)
    return root, expected, before, mpath, m


def _img(m, row) -> Image.Image:
    return Image.open(m.folder / row["repaired_path"])


def test_zoo_repairs_match(repaired_zoo):
    root, expected, before, mpath, m = repaired_zoo
    rows = m.df.set_index("path")
    assert sorted(rows.index) == sorted(expected)
    for rel, exp in expected.items():
        row = rows.loc[rel]
        assert row["repair_action"] == exp["repair_action"], (rel, exp["kind"], row["repair_reason"])
        copied = exp["repair_action"] in ("converted", "best_frame", "recovered")
        assert pd.notna(row["repaired_path"]) == copied, rel
        if copied:
            p = m.folder / row["repaired_path"]
            assert p.is_file() and row["repaired_path"].startswith("cache/repaired/")
            with Image.open(p) as im:
                assert im.format == "PNG" and im.mode == "RGB"
            assert isinstance(row["repair_reason"], str) and row["repair_reason"]
        if "frame_index" in exp:
            assert row["frame_index"] == exp["frame_index"], (rel, row["repair_reason"])
    assert _originals(root) == before, "originals are byte-identical after scan and repair"
    rec = m.history[-1]
    assert rec["stage"] == "repair" and rec["params"]["min_recovered"] == RepairOptions().min_recovered
    assert rec["params"]["background"] == "#ffffff"


def test_recovered_fractions_and_threshold(repaired_zoo):
    *_, m = repaired_zoo
    rows = m.df.set_index("path")
    thr = RepairOptions().min_recovered
    for rel in ("truncated_half.jpg", "truncated.png"):
        f = rows.loc[rel, "recovered_fraction"]
        assert thr <= f < 0.9, (rel, f)
        a = np.asarray(_img(m, rows.loc[rel]))
        assert a[: int(a.shape[0] * f) - 8].std() > 20, "the decoded top holds the picture"
    early = rows.loc["truncated_early.jpg"]
    assert 0 < early["recovered_fraction"] < thr and "only" in early["repair_reason"]
    assert rows.loc["corrupt.png", "recovered_fraction"] == 0


def test_converted_pixels(repaired_zoo):
    root, _, _, _, m = repaired_zoo
    rows = m.df.set_index("path")
    rot = _img(m, rows.loc["rotated.jpg"])
    assert rot.size == (120, 160), "orientation 6 swaps width and height"
    src = np.asarray(Image.open(root / "rotated.jpg").transpose(Image.Transpose.ROTATE_270), dtype=float)
    assert np.abs(np.asarray(rot, dtype=float) - src).mean() < 2
    r, g, b = np.asarray(_img(m, rows.loc["cmyk.jpg"]), dtype=float).reshape(-1, 3).mean(0)
    assert r > 180 and g < 70 and b < 70, "CMYK red stays red"
    r, g, b = np.asarray(_img(m, rows.loc["icc_swapped.jpg"]), dtype=float).reshape(-1, 3).mean(0)
    assert b > 150 and r < 80, "the profile's swapped primaries turn stored red into sRGB blue"
    g16 = np.asarray(_img(m, rows.loc["grey16.png"]))[..., 0].ravel()
    assert g16.min() <= 1 and g16.max() >= 254 and (np.diff(g16.astype(int)) >= 0).all()
    rgba = np.asarray(_img(m, rows.loc["rgba.png"]))
    assert (rgba[0, 0] == 255).all() and rows.loc["rgba.png", "background"] == "#ffffff"
    assert rows.loc["palette_transparent.png", "background"] == "#ffffff"
    assert pd.isna(rows.loc["cmyk.jpg", "background"])


def test_best_frame_is_the_sharp_colourful_one(repaired_zoo):
    *_, m = repaired_zoo
    rows = m.df.set_index("path")
    sharp = np.asarray(picture(seed=11), dtype=float)   # frame 1 of every zoo animation
    for rel in ("anim.png", "anim.webp"):              # lossless: exactly frame 1
        got = np.asarray(_img(m, rows.loc[rel]), dtype=float)
        assert np.abs(got - sharp).mean() < 1, rel
    gif = np.asarray(_img(m, rows.loc["anim_blank_first.gif"]), dtype=float)
    assert np.abs(gif - sharp).mean() < 12, "GIF palette quantisation only"
    assert "blank frame(s) 0" in rows.loc["anim_blank_first.gif", "repair_reason"]


def test_best_frame_order_does_not_matter():
    sharp = picture(seed=20)
    candidates = [Image.new("RGB", sharp.size, "white"), sharp.filter(ImageFilter.GaussianBlur(3)),
                  sharp, sharp.convert("L").convert("RGB")]
    for order in itertools.permutations(range(4)):
        frames = [candidates[i] for i in order]
        buf = io.BytesIO()
        frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:])
        with Image.open(buf) as im:
            idx, frame, scores, problem = best_frame(im, background=(255, 255, 255))
        assert idx == order.index(2) and problem is None, order
        assert [s.blank for s in scores] == [i == 0 for i in order]
    buf = io.BytesIO()
    blank = Image.new("RGB", (32, 32), "white")
    blank.save(buf, "GIF", save_all=True, append_images=[Image.new("RGB", (32, 32), "black")])
    with Image.open(buf) as im:
        assert best_frame(im, background=(255, 255, 255))[0] == 0, "all blank: frame 0"


def test_decoded_row_fraction_follows_the_cut():
    pic = picture(200, 150, seed=30)
    for fmt in ("PNG", "JPEG"):
        buf = io.BytesIO()
        pic.save(buf, fmt)
        data = buf.getvalue()
        fracs = []
        for cut in (0.3, 0.6, 0.9):
            with truncated_images_allowed(), Image.open(io.BytesIO(data[:int(len(data) * cut)])) as im:
                im.load()
                fracs.append(decoded_row_fraction(im, fmt))
        assert fracs == sorted(fracs) and fracs[0] < fracs[-1] < 1, (fmt, fracs)
        with Image.open(io.BytesIO(data)) as im:
            assert decoded_row_fraction(im, fmt) == 1.0


def test_truncated_mode_is_local():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(RuntimeError):
        with truncated_images_allowed():
            assert ImageFile.LOAD_TRUNCATED_IMAGES is True
            raise RuntimeError("boom")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def _small_set(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "photos"
    root.mkdir()
    pic = picture(64, 48, seed=40)
    pic.save(root / "ok.jpg")
    big = io.BytesIO()
    picture(200, 150, seed=41).save(big, "JPEG", quality=90)
    rgba = pic.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(pic.size))
    rgba.save(root / "alpha.png")
    pic.convert("L").save(root / "grey.png")
    data = big.getvalue()
    (root / "cut.jpg").write_bytes(data[: len(data) // 4])
    mpath = tmp_path / "work" / "m.parquet"
    scan_folder(root, mpath, workers=1, progress=False)
    return root, mpath


def test_resume_and_parameters(tmp_path):
    root, mpath = _small_set(tmp_path)
    m1 = repair_manifest(mpath, workers=1, progress=False)
    r1 = m1.df.set_index("path")
    cached = {p: (m1.folder / r1.loc[p, "repaired_path"]) for p in ("alpha.png", "grey.png")}
    mtimes = {p: f.stat().st_mtime_ns for p, f in cached.items()}

    m2 = repair_manifest(mpath, workers=1, progress=False)
    assert m2.history[-1]["params"]["reused"] == 4, "same options: nothing redone"
    assert {p: f.stat().st_mtime_ns for p, f in cached.items()} == mtimes

    cached["grey.png"].unlink()                       # a lost cache file is made again
    m3 = repair_manifest(mpath, workers=1, progress=False)
    assert m3.history[-1]["params"]["reused"] == 3 and cached["grey.png"].is_file()

    m4 = repair_manifest(mpath, RepairOptions(background="black", min_recovered=0.05),
                         workers=1, progress=False)
    r4 = m4.df.set_index("path")
    assert m4.history[-1]["params"]["reused"] == 0
    assert r4.loc["alpha.png", "background"] == "#000000"
    assert r4.loc["alpha.png", "repaired_path"] != r1.loc["alpha.png", "repaired_path"]
    assert (m4.folder / r1.loc["alpha.png", "repaired_path"]).is_file(), "old copies are kept"
    assert r1.loc["cut.jpg", "repair_action"] == "unrecoverable"
    assert 0.05 < r1.loc["cut.jpg", "recovered_fraction"] < RepairOptions().min_recovered
    assert r4.loc["cut.jpg", "repair_action"] == "recovered", "threshold is an option"
    assert m4.history[-1]["params"]["min_recovered"] == 0.05


def test_bad_options_and_cli(tmp_path, capsys):
    root, mpath = _small_set(tmp_path)
    with pytest.raises(UserError, match="--background"):
        repair_manifest(mpath, RepairOptions(background="not-a-colour"), progress=False)
    with pytest.raises(UserError, match="--min-recovered"):
        repair_manifest(mpath, RepairOptions(min_recovered=1.5), progress=False)

    def run(args):
        try:
            curate_main(args)
            return 0
        except SystemExit as exc:
            return exc.code

    assert run(["repair", "--manifest", str(mpath), "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "4 files" in out and "converted: 2" in out
    assert run(["repair", "--manifest", str(tmp_path / "nope.parquet")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and len(err.strip().splitlines()) == 1


def test_crop_rows_share_their_file_repair(tmp_path):
    """Rows added by detect (crop_index > 0) get their file's repair columns."""
    from manifests import write_manifest
    from manifests.ids import sample_id

    root, mpath = _small_set(tmp_path)
    m = read_manifest(mpath)
    row = m.df[m.df["path"] == "grey.png"].copy()
    row["crop_index"] = pd.array([1], dtype="Int32")
    row["sample_id"] = pd.array([sample_id(row["sha256"].iloc[0], "grey.png", 1)], dtype="string")
    m.df = pd.concat([m.df, row], ignore_index=True)
    write_manifest(m, mpath, stage="test")
    out = repair_manifest(mpath, workers=1, progress=False).df
    grey = out[out["path"] == "grey.png"]
    assert len(grey) == 2 and grey["repair_action"].tolist() == ["converted", "converted"]
    assert grey["repaired_path"].nunique() == 1


@pytest.mark.slow
def test_real_photos_repair(shared_data, tmp_path):
    root = shared_data / "motorbikes"
    mpath = tmp_path / "m.parquet"
    scan_folder(root, mpath, workers=2, progress=False)
    sha_before = read_manifest(mpath).df.set_index("path")["sha256"]
    m = repair_manifest(mpath, workers=2, progress=False)
    df = m.df
    assert df["repair_action"].notna().all()
    grey = df["mode"] == "L"
    assert grey.any()
    assert (df.loc[grey, "repair_action"] == "converted").all()
    assert set(df.loc[~grey, "repair_action"]) <= {"none", "converted"}
    for p in df["repaired_path"].dropna():
        with Image.open(m.folder / p) as im:
            assert im.mode == "RGB"
    changed = [rel for rel in df["path"] if file_sha256(root / rel) != sha_before[rel]]
    assert not changed, "originals are byte-identical"


def test_uncommon_formats_get_a_png_copy():
    from curate.repair_worker import fine_as_is

    row = {"mode": "RGB", "n_frames": 1, "exif_orientation": 1, "icc_profile": None}
    assert fine_as_is({**row, "format": "JPEG"})
    assert not fine_as_is({**row, "format": "HEIF"})  # later stages may lack a HEIF decoder
