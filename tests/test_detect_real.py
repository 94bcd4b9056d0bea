"""The detect stage with the real detector (the shared TFLite YOLOv8n) on real photos."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from manifests import file_sha256, read_manifest, sample_id
from common.errors import UserError

RANDOM_INIT = "yolo11n.yaml"

from tests.test_detect import _manifest_for, _one_thread, _picture, _spy, _unspy  # noqa: F401  (fixtures and helpers shared with test_detect.py)
from tests.test_detect_mechanics import _cli, _opts


# --------------------------------------------------------------------------- real detector

@pytest.fixture(scope="module")
def tflite_detector(tflite_weights):
    from curate.detector import load_detector

    return load_detector(tflite_weights, "cpu")


def _check_crops(m, mp: Path):
    from curate.crop import recrop

    ok = m.df[m.df["detect_status"] == "ok"]
    assert len(ok)
    for _, row in ok.iterrows():
        x0, y0, x1, y1 = (int(v) for v in row["crop_box"])
        bx0, by0, bx1, by1 = (float(v) for v in row["primary_box"])
        assert x0 <= bx0 and y0 <= by0 and bx1 <= x1 and by1 <= y1      # the bike is inside its crop
        stored = mp.parent / row["crop_path"]
        assert stored.is_file() and str(row["crop_path"]).startswith("cache/crops/")
        with Image.open(stored) as im:
            assert im.size == (x1 - x0, y1 - y0) and im.mode == "RGB"
        data = stored.read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["crop_sha256"]
        rebuilt = recrop(m.folder, m.root, row)
        assert hashlib.sha256(rebuilt).hexdigest() == row["crop_sha256"]   # byte for byte


@pytest.mark.slow
def test_batching_does_not_change_detections(caltech, tflite_detector):
    from curate.crop import decode_rgb

    files = sorted(caltech.glob("*.jpg"))[200:206]
    arrays = [np.ascontiguousarray(decode_rgb(f)[:, :, ::-1]) for f in files]
    batched = tflite_detector.predict(arrays, imgsz=640, conf=0.25)
    single = [tflite_detector.predict([a], imgsz=640, conf=0.25)[0] for a in arrays]
    assert batched == single
    assert all(any(d["label"] == "motorcycle" for d in dets) for dets in batched)


@pytest.mark.slow
def test_caltech_motorbikes_found_and_cropped(caltech, tflite_detector, tmp_path):
    from curate.detect import detect_manifest

    files = sorted(caltech.glob("*.jpg"))
    sample = files[::16]                                   # 50 of 798, spread over the set
    grey = [f for f in files[:120] if Image.open(f).mode == "L"][:2]
    rels = sorted({f.name for f in [*sample, *grey]})
    mp = _manifest_for(caltech, rels, tmp_path / "w" / "manifest.parquet")
    m = detect_manifest(mp, _opts(weights=str(tflite_detector.path), imgsz=640, conf=0.25, batch=8),
                        progress=False, detector=tflite_detector)
    df = m.df
    assert len(df) == len(rels)
    ok = df[df["detect_status"] == "ok"]
    assert len(ok) >= 0.95 * len(df), df["detect_status"].value_counts().to_dict()
    assert set(df["detect_status"]) <= {"ok", "no_motorbike"}
    for _, row in ok.iterrows():
        labels = [d["label"] for d in row["detections"]]
        assert "motorcycle" in labels and row["n_motorbikes"] >= 1
    # Caltech bikes fill the frame: the crop is most of the photo
    frac = ok["box_area_frac"].astype(float)
    assert frac.median() > 0.4
    crop_area = ok["crop_box"].map(lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    assert (crop_area / (ok["width"].astype(float) * ok["height"].astype(float))).median() > 0.5
    assert (ok["crop_margin"] == np.float32(0.10)).all()
    _check_crops(m, mp)
    assert ok["weights_sha256"].eq(file_sha256(tflite_detector.path)).all()


@pytest.mark.slow
def test_cctv_several_bikes_persons_bicycles_and_one_sample_per_bike(cctv, tflite_detector, tmp_path):
    from curate.detect import detect_manifest

    frames = sorted(cctv.glob("*.jpg"))[::8][:6]
    rels = [f.name for f in frames]
    mp = _manifest_for(cctv, rels, tmp_path / "w" / "manifest.parquet")
    opts = _opts(weights=str(tflite_detector.path), imgsz=640, conf=0.25, batch=4, per_image="all",
                 min_size=16)
    m = detect_manifest(mp, opts, progress=False, detector=tflite_detector)
    df = m.df
    base = df[df["crop_index"] == 0].set_index("path")
    assert sorted(base.index) == sorted(rels)
    labels = {p: [d["label"] for d in base.loc[p, "detections"]] for p in rels}
    bikes = np.array([lab.count("motorcycle") for lab in labels.values()])
    assert (base["n_motorbikes"].astype(int).to_numpy() == bikes).all()
    assert bikes.mean() >= 1.5 and (bikes >= 2).sum() >= len(rels) / 2        # several per frame
    assert all(lab.count("motorcycle") + lab.count("bicycle") >= 1 for lab in labels.values())
    assert sum("person" in lab for lab in labels.values()) >= len(rels) / 2
    assert any("bicycle" in lab for lab in labels.values())
    # one sample per motorbike (above the minimum size), each with its own id and crop
    extra = df[df["crop_index"] > 0]
    assert len(extra) >= 2 and extra["sample_id"].is_unique
    for path, grp in df.groupby("path"):
        n_big = sum(1 for d in base.loc[path, "detections"] if d["label"] == "motorcycle"
                    and min(d["x1"] - d["x0"], d["y1"] - d["y0"]) >= 16)
        if base.loc[path, "detect_status"] == "ok":
            assert len(grp) == max(1, n_big)
            assert sorted(grp["crop_index"]) == list(range(len(grp)))
            assert grp["crop_path"].is_unique
            sha = base.loc[path, "sha256"]
            for _, r in grp.iterrows():
                assert r["sample_id"] == sample_id(sha, path, int(r["crop_index"]))
                assert r["width"] == base.loc[path, "width"]             # file columns copied
    assert base["person_overlap"].dropna().between(0, 1).all()
    _check_crops(m, mp)
    # a second run resumes: nothing changes, no duplicate extra rows
    again = detect_manifest(mp, opts, progress=False, detector=tflite_detector).df
    assert sorted(again["sample_id"]) == sorted(df["sample_id"])


@pytest.mark.slow
def test_cli_on_a_folder_scans_first_then_detects(caltech, tflite_weights, tmp_path):
    pytest.importorskip("curate.scan")
    pytest.importorskip("curate.repair")
    photos = tmp_path / "photos"
    photos.mkdir()
    for f in sorted(caltech.glob("*.jpg"))[:5]:
        shutil.copy(f, photos / f.name)
    (photos / "-dash.jpg").write_bytes((photos / sorted(p.name for p in photos.iterdir())[0]).read_bytes())
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.txt").write_text("not a photo\n")
    work = tmp_path / "work"
    args = ["detect", str(photos), "-o", str(work), "--weights", str(tflite_weights), "--batch", "4",
            "--no-progress"]
    assert _cli(args) == 0
    m = read_manifest(work / "manifest.parquet")
    df = m.df.set_index("path")
    assert len(df) == 8
    assert (df.loc[[p for p in df.index if p.endswith(".jpg") and p != "empty.jpg"], "detect_status"]
            == "ok").all()
    assert df.loc["empty.jpg", "detect_status"] == "not_decodable"
    assert df.loc["notes.txt", "detect_status"] == "not_decodable"
    assert _cli(args) == 0                                   # again: resumes, same rows
    assert len(read_manifest(work / "manifest.parquet").df) == 8


@pytest.mark.slow
def test_crop_follows_a_new_background_of_the_repaired_copy(caltech, tflite_detector, tmp_path):
    from curate.detect import detect_manifest
    from curate.repair import RepairOptions, repair_manifest
    from curate.scan import scan_folder

    (tmp_path / "photos").mkdir()
    rgba = np.array(Image.open(caltech / "image_0003.jpg").convert("RGBA"))
    rgba[:, :130, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "photos" / "alpha.png")
    mp = tmp_path / "work" / "manifest.parquet"
    scan_folder(tmp_path / "photos", mp, workers=1, progress=False)
    opts = _opts(weights=str(tflite_detector.path), imgsz=640, conf=0.25)
    for background in ("#ffffff", "#ff0000"):
        repair_manifest(mp, RepairOptions(background=background), workers=1, progress=False)
        row = detect_manifest(mp, opts, progress=False, detector=tflite_detector).df.iloc[0]
        assert row["detect_status"] == "ok"
        crop = np.array(Image.open(mp.parent / row["crop_path"]))
        repaired = np.array(Image.open(mp.parent / row["repaired_path"]))
        colour = Image.new("RGB", (1, 1), background).getpixel((0, 0))
        assert tuple(crop[2, 2]) == tuple(repaired[2, 2]) == colour


@pytest.mark.slow
def test_fixed_size_model_ignores_imgsz_and_says_so(caltech, tflite_detector, tmp_path, caplog):
    from curate.detect import detect_manifest

    assert tflite_detector.input_size == (640, 640)
    rels = [f.name for f in sorted(caltech.glob("*.jpg"))[:2]]
    mp = _manifest_for(caltech, rels, tmp_path / "w" / "manifest.parquet")
    calls: list[int] = []
    _spy(tflite_detector, calls)
    try:
        with caplog.at_level("WARNING", logger="curate.detect"):
            m = detect_manifest(mp, _opts(weights=str(tflite_detector.path), imgsz=320, conf=0.25),
                                progress=False, detector=tflite_detector)
        warnings = [r.getMessage() for r in caplog.records if "imgsz" in r.getMessage()]
        assert len(warnings) == 1 and "--imgsz 320 is ignored" in warnings[0] and "640x640" in warnings[0]
        assert m.stage_params("detect")["imgsz"] == 640               # what the model really took
        assert sum(calls) == 2
        calls.clear()
        caplog.clear()
        with caplog.at_level("WARNING", logger="curate.detect"):
            again = detect_manifest(mp, _opts(weights=str(tflite_detector.path), imgsz=1280, conf=0.25),
                                    progress=False, detector=tflite_detector)
        assert calls == [], "another --imgsz changes nothing for this model: nothing redone"
        assert again.df["detect_key"].tolist() == m.df["detect_key"].tolist()
        assert "--imgsz 1280 is ignored" in caplog.text
        calls.clear()
        caplog.clear()
        with caplog.at_level("WARNING", logger="curate.detect"):
            detect_manifest(mp, _opts(weights=str(tflite_detector.path), imgsz=640, conf=0.25),
                            progress=False, detector=tflite_detector)
        assert calls == [] and "imgsz" not in caplog.text          # 640 is its size: nothing ignored
    finally:
        _unspy(tflite_detector)


def test_cli_on_a_folder_adds_files_that_arrived_since(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    _picture(64, 48, 1).save(photos / "a.jpg")
    args = ["detect", str(photos), "-o", str(tmp_path / "w"), "--weights", RANDOM_INIT, "--imgsz", "64",
            "--device", "cpu", "--no-progress"]
    assert _cli(args) == 0
    _picture(64, 48, 2).save(photos / "b.jpg")
    assert _cli(args) == 0
    assert "2 files" in capsys.readouterr().out
    df = read_manifest(tmp_path / "w" / "manifest.parquet").df
    assert sorted(df["path"]) == ["a.jpg", "b.jpg"] and df["detect_status"].notna().all()


def test_weights_that_are_no_model_are_refused_before_any_work(tmp_path, capsys):
    from curate.detector import resolve_weights

    photos = tmp_path / "photos"
    photos.mkdir()
    _picture(64, 48, 1).save(photos / "a.jpg")
    with pytest.raises(UserError, match=r"not a model.*\.pt.*\.tflite.*\*_saved_model/"):
        resolve_weights(photos / "a.jpg")
    (tmp_path / "m_saved_model").mkdir()
    (tmp_path / "m_saved_model" / "saved_model.pb").write_bytes(b"x")
    assert resolve_weights(tmp_path / "m_saved_model") == tmp_path / "m_saved_model"
    rc = _cli(["detect", str(photos), "-o", str(tmp_path / "w"), "--weights", str(photos / "a.jpg")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "a.jpg" in err
    assert not (tmp_path / "w" / "manifest.parquet").exists()


def test_copies_follow_the_model_format_and_device():
    from types import SimpleNamespace

    from curate.detector_copies import copies_wanted

    tfl = SimpleNamespace(format="litert", device="cpu", name="t")
    assert copies_wanted(tfl, cpus=2) == (2, 1)
    assert copies_wanted(tfl, cpus=16) == (8, 2)          # at most 8 copies, the cores shared out
    assert copies_wanted(tfl, copies=1, cpus=16) == (1, 16)
    assert copies_wanted(tfl, cpus=1) == (1, 1)
    assert copies_wanted(SimpleNamespace(format="pt", device="cpu", name="p"), copies=4) == (1, 0)
    assert copies_wanted(SimpleNamespace(format="litert", device="cuda:0", name="g")) == (1, 0)


@pytest.mark.slow
def test_copies_side_by_side_give_the_one_copy_manifest(shared_data, tflite_detector, tmp_path):
    """Two TFLite copies detecting in two threads: the same rows, detections, looks and crop bytes as one."""
    from curate.detect import detect_manifest
    from curate.detector_copies import detector_copies

    assert len(detector_copies(tflite_detector, 2)) == 2
    web = shared_data / "web"
    rels = sorted(f"bikes/{p.name}" for p in (web / "bikes").iterdir())[::40]
    rels += sorted(f"cars/{p.name}" for p in (web / "cars").iterdir())[::40]   # second looks, no bike
    frames = {}
    for copies in (1, 2):
        mp = _manifest_for(web, rels, tmp_path / f"c{copies}" / "manifest.parquet")
        m = detect_manifest(mp, _opts(weights=str(tflite_detector.path), imgsz=640, conf=0.25, batch=4,
                                      copies=copies, per_image="all"), progress=False, detector=tflite_detector)
        frames[copies] = m.df.set_index("sample_id").sort_index()
        if copies == 2:
            _check_crops(m, mp)
    one, two = frames[1], frames[2]
    assert one.index.equals(two.index) and len(one) >= len(rels)
    assert set(one["detect_status"]) >= {"ok", "no_motorbike"}
    assert (one["detect_look"] == "padded").any()
    for col in ("detect_status", "detections", "n_motorbikes", "crop_box", "crop_sha256", "detect_look"):
        assert one[col].astype(str).equals(two[col].astype(str)), col


@pytest.mark.slow
def test_far_look_finds_the_thumbnails_both_nearer_looks_miss(shared_data, tflite_detector, tmp_path):
    """100 px thumbnails of whole bikes (labelled keep) that the first and the padded look miss: the far
    look finds them, says so in `detect_look`, and its box is in the photo's own pixels. A 275 px
    close-up of a part (labelled part_closeup), which it finds too when any size may take it, is left
    alone by default: the far look is for thumbnails."""
    from curate.detect import detect_manifest

    web = shared_data / "web"
    thumbs = ["bikes/Bike (46).jpeg", "bikes/Bike (495).jpeg", "bikes/Bike (779).jpeg"]
    part = "bikes/Bike (347).jpeg"
    if not all((web / r).is_file() for r in [*thumbs, part]):
        pytest.skip("the web thumbnails are not in this copy of the shared data")
    frames = {}
    for name, kw in (("off", {"far_look": 0.0}), ("default", {}), ("any", {"far_look_side": 0})):
        mp = _manifest_for(web, [*thumbs, part], tmp_path / name / "manifest.parquet")
        frames[name] = detect_manifest(mp, _opts(weights=str(tflite_detector.path), imgsz=640, conf=0.25, **kw),
                                       progress=False, detector=tflite_detector)
    assert set(frames["off"].df["detect_status"]) == {"no_motorbike"}
    far = frames["default"]
    found = far.df[far.df["detect_status"] == "ok"]
    assert len(found) >= 2 and set(found["detect_look"]) == {"far"} and set(found["path"]) <= set(thumbs)
    for _, row in found.iterrows():
        x0, y0, x1, y1 = (float(v) for v in row["primary_box"])
        assert 0 <= x0 < x1 <= row["width"] and 0 <= y0 < y1 <= row["height"]
        assert (x1 - x0) * (y1 - y0) > 0.3 * row["width"] * row["height"]    # the bike fills the thumbnail
    _check_crops(far, tmp_path / "default" / "manifest.parquet")
    assert far.stage_params("detect")["far_look"] == 1.0 and far.stage_params("detect")["far_look_side"] == 200
    anysize = frames["any"].df.set_index("path")
    assert anysize.loc[part, "detect_look"] == "far" and anysize.loc[part, "detect_status"] == "ok"


@pytest.mark.slow
def test_second_look_replaces_a_wheel_with_the_whole_bike(shared_data, tflite_detector, tmp_path):
    """Whole bikes filling the frame (labelled keep) where the first look boxes only a wheel or a small
    bike beside them: the padded look runs for a box under --second-look-box of the photo and takes
    over with a box at least 4x as large; with the option off the small box stays the primary."""
    from curate.detect import detect_manifest

    web = shared_data / "web"
    rels = ["bikes/Bike (705).jpeg", "bikes/Bike (542).jpeg"]
    if not all((web / r).is_file() for r in rels):
        pytest.skip("the web photos are not in this copy of the shared data")
    frames = {}
    for box in (0.0, 0.12):
        mp = _manifest_for(web, rels, tmp_path / f"box{box}" / "manifest.parquet")
        frames[box] = detect_manifest(mp, _opts(weights=str(tflite_detector.path), imgsz=640, conf=0.25,
                                                second_look_box=box), progress=False, detector=tflite_detector)
    off, on = (frames[b].df.set_index("path") for b in (0.0, 0.12))
    for rel in rels:
        assert off.loc[rel, "detect_look"] == "first" and off.loc[rel, "box_area_frac"] < 0.12
        assert on.loc[rel, "detect_look"] == "padded"
        assert on.loc[rel, "box_area_frac"] >= 4 * off.loc[rel, "box_area_frac"]
    _check_crops(frames[0.12], tmp_path / "box0.12" / "manifest.parquet")
    assert frames[0.12].stage_params("detect")["second_look_box"] == 0.12


@pytest.mark.slow
def test_curate_run_takes_the_far_look(shared_data, tflite_weights, tmp_path, curate_cli):
    photos = tmp_path / "thumbs"
    photos.mkdir()
    for name in ("Bike (46).jpeg", "Bike (495).jpeg"):
        src = shared_data / "web" / "bikes" / name
        if not src.is_file():
            pytest.skip("the web thumbnails are not in this copy of the shared data")
        shutil.copy(src, photos / name)
    for far, looked in (([], True), (["--far-look", "0"], False)):     # on by default
        out_dir = tmp_path / f"w{len(far)}"
        code, out, err = curate_cli(["run", str(photos), "-o", str(out_dir), "--weights", str(tflite_weights),
                                     *far, "--no-report"])
        assert code == 0, err
        m = read_manifest(out_dir / "manifest.parquet")
        assert (m.df["detect_look"] == "far").any() == looked
        assert m.stage_params("detect").get("far_look", 0.0) == (1.0 if looked else 0.0)
