"""`curate detect`: box geometry, weights resolution, the batched/resumable run, real detection, CLI."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from manifests import file_sha256, read_manifest, sample_id, write_manifest
from common.errors import UserError

RANDOM_INIT = "yolo11n.yaml"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- helpers

def _picture(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 90)], -1)
    arr = arr + rng.integers(-20, 21, (h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def _size(p: Path):
    try:
        with Image.open(p) as im:
            return im.size
    except (OSError, ValueError):
        return None, None


def _manifest_for(root: Path, rels: list[str], manifest_path: Path, **per_row) -> Path:
    """A scan-stage manifest for files under `root` (status ok unless `per_row[rel]` says otherwise)."""
    rows = []
    for rel in rels:
        sha = file_sha256(root / rel)
        w, h = _size(root / rel)
        row = {"sample_id": sample_id(sha, rel, 0), "path": rel, "crop_index": 0, "status": "ok",
               "sha256": sha, "width": w, "height": h}
        row.update(per_row.get(rel, {}))
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in ("width", "height"):
        df[c] = df[c].astype("Int32")
    write_manifest(df, manifest_path, stage="scan", root=str(root))
    return manifest_path


def _spy(det, calls: list, fail_on_call: int | None = None) -> None:
    """Count the real detector's predict calls (and batch sizes); optionally interrupt one call.

    Undo with `_unspy(det)`.
    """
    _unspy(det)
    real = det.predict

    def predict(images, **kw):
        calls.append(len(images))
        if fail_on_call is not None and len(calls) == fail_on_call:
            raise KeyboardInterrupt
        return real(images, **kw)

    det.predict = predict


def _unspy(det) -> None:
    vars(det).pop("predict", None)


# --------------------------------------------------------------------------- geometry

def test_margin_box_grows_rounds_outwards_and_clamps():
    from curate.crop import margin_box

    assert margin_box((10.2, 20.5, 50.0, 60.0), 0.10, 200, 100) == (6, 16, 54, 64)
    assert margin_box((0.5, 1.0, 199.0, 99.5), 0.10, 200, 100) == (0, 0, 200, 100)
    assert margin_box((30, 30, 40, 40), 0.0, 200, 100) == (30, 30, 40, 40)
    assert margin_box((199.9, 99.9, 200, 100), 0.0, 200, 100) == (199, 99, 200, 100)  # >= 1 px


def test_covered_fraction_is_the_exact_union_share():
    from curate.crop import covered_fraction

    box = (0, 0, 10, 10)
    assert covered_fraction(box, []) == 0.0
    assert covered_fraction(box, [(20, 20, 30, 30)]) == 0.0
    assert covered_fraction(box, [(0, 0, 5, 10)]) == pytest.approx(0.5)
    # two overlapping halves: the union is 0.75, not the sum 1.0
    assert covered_fraction(box, [(0, 0, 5, 10), (0, 0, 10, 5)]) == pytest.approx(0.75)
    assert covered_fraction(box, [(-5, -5, 15, 15)]) == pytest.approx(1.0)
    assert covered_fraction(box, [(5, 5, 20, 20), (5, 5, 20, 20)]) == pytest.approx(0.25)


def test_cut_off_within_a_few_pixels_of_the_border():
    from curate.crop import is_cut_off

    assert is_cut_off((1, 50, 40, 80), 200, 100)
    assert is_cut_off((50, 50, 198.5, 80), 200, 100)
    assert not is_cut_off((10, 10, 190, 90), 200, 100)


def test_primary_is_largest_area_times_confidence_and_overlaps_are_recorded():
    from curate.detect_results import describe_bike, rank_motorbikes

    d = lambda label, conf, *b: dict(label=label, conf=conf, x0=b[0], y0=b[1], x1=b[2], y1=b[3])  # noqa: E731
    small_sure = d("motorcycle", 0.95, 10, 10, 30, 30)        # 400 * 0.95
    big_unsure = d("motorcycle", 0.40, 100, 20, 180, 80)      # 4800 * 0.40
    rider = d("person", 0.9, 100, 0, 140, 50)
    car = d("car", 0.8, 160, 20, 200, 80)
    dets = [small_sure, rider, car, big_unsure]
    ranked = rank_motorbikes(dets, {"motorcycle"})
    assert ranked == [big_unsure, small_sure]
    cols = describe_bike(big_unsure, dets, 200, 100, 0.10)
    assert cols["primary_box"] == [100, 20, 180, 80]
    assert cols["box_area_frac"] == pytest.approx(4800 / 20000)
    assert cols["person_overlap"] == pytest.approx(40 * 30 / 4800)
    assert cols["other_overlap"] == pytest.approx(20 * 60 / 4800)   # the car; the other bike is apart
    assert cols["cut_off"] is False
    assert cols["crop_box"] == [92, 14, 188, 86]


# --------------------------------------------------------------------------- weights

def test_stock_name_offline_fails_fast_with_how_to_pass_a_file(monkeypatch):
    from curate.detector import resolve_weights

    monkeypatch.setenv("YOLO_OFFLINE", "1")
    with pytest.raises(UserError, match="--weights"):
        resolve_weights("yolo11n.pt")


def test_failed_download_is_a_user_error(monkeypatch, tmp_path):
    """The real download path (ultralytics' downloader), forced past the online probe, on a machine
    where the download cannot succeed."""
    from curate import detector

    monkeypatch.delenv("YOLO_OFFLINE", raising=False)
    if detector._is_online():
        pytest.skip("online: the download would succeed here")
    monkeypatch.setattr(detector, "_ultralytics_weights_dir", lambda: tmp_path)
    monkeypatch.setattr(detector, "_is_online", lambda: True)
    with pytest.raises(UserError, match="cannot download yolo11n.pt.*--weights"):
        detector.resolve_weights("yolo11n.pt")
    assert not (tmp_path / "yolo11n.pt").exists()


def test_missing_empty_and_garbage_weights_are_user_errors(tmp_path):
    from curate.detector import load_detector, resolve_weights

    with pytest.raises(UserError, match="not found"):
        resolve_weights(tmp_path / "nope.pt")
    with pytest.raises(UserError, match="not found"):
        resolve_weights("not-a-model-name.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        resolve_weights(tmp_path / "empty.pt")
    (tmp_path / "garbage.pt").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(UserError, match="cannot load weights"):
        load_detector(tmp_path / "garbage.pt", "cpu")


def test_weights_folder_of_ultralytics_is_used(tmp_path, monkeypatch):
    from curate import detector

    (tmp_path / "yolo11n.pt").write_bytes(b"x" * 10)
    monkeypatch.setattr(detector, "_ultralytics_weights_dir", lambda: tmp_path)
    assert detector.resolve_weights("yolo11n.pt") == tmp_path / "yolo11n.pt"


def test_device_auto_and_bad_device():
    import torch

    from curate.detector import resolve_device

    assert resolve_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(UserError, match="--device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA"):
            resolve_device("cuda:0")


# --------------------------------------------------------------------------- mechanics (random init)

@pytest.fixture(scope="module")
def random_detector():
    from curate.detector import load_detector

    return load_detector(RANDOM_INIT, "cpu", imgsz=160)


@pytest.fixture()
def synthetic(tmp_path):
    """7 decodable images, one row the scan marked corrupt, one 'ok' row whose file is now broken,
    one truncated file with a repaired copy in the cache."""
    root = tmp_path / "photos"
    root.mkdir()
    rels = []
    for i in range(7):
        rel = f"img_{i}.jpg" if i % 2 else f"sub/img_{i}.png"
        (root / rel).parent.mkdir(exist_ok=True)
        _picture(120 + 10 * i, 90 + 5 * i, i).save(root / rel)
        rels.append(rel)
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (root / "broken_now.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage too")
    good = _picture(100, 80, 99)
    good.save(root / "trunc.jpg")
    data = (root / "trunc.jpg").read_bytes()
    (root / "trunc.jpg").write_bytes(data[: len(data) // 2])
    work = tmp_path / "work"
    repaired = work / "cache" / "repaired" / "ab" / "abc.png"
    repaired.parent.mkdir(parents=True)
    good.save(repaired)
    mp = _manifest_for(root, [*rels, "corrupt.jpg", "broken_now.jpg", "trunc.jpg"],
                       work / "manifest.parquet",
                       **{"corrupt.jpg": {"status": "corrupt", "error": "bad"},
                          "trunc.jpg": {"status": "truncated",
                                        "repaired_path": "cache/repaired/ab/abc.png"},
                          "broken_now.jpg": {"status": "ok"}})
    return mp, rels


def _opts(**kw):
    from curate.detect import DetectOptions

    base = dict(weights=RANDOM_INIT, device="cpu", imgsz=160, conf=1e-4, batch=3, workers=2)
    base.update(kw)
    return DetectOptions(**base)


def test_random_init_keeps_every_row_with_a_status_and_typed_columns(synthetic, random_detector):
    from curate.detect import detect_manifest

    mp, rels = synthetic
    before = read_manifest(mp).df
    calls: list[int] = []
    _spy(random_detector, calls)
    try:
        m = detect_manifest(mp, _opts(), progress=False, detector=random_detector)
    finally:
        _unspy(random_detector)
    df = m.df.set_index("path")
    assert sorted(m.df["sample_id"]) == sorted(before["sample_id"])  # rows kept, none added
    # batched: 8 decodable images (7 + the repaired copy) minus the broken one -> 3 + 3 + 2
    assert calls == [3, 3, 2]
    assert df.loc["corrupt.jpg", "detect_status"] == "not_decodable"
    assert "corrupt" in df.loc["corrupt.jpg", "detect_error"]
    assert df.loc["broken_now.jpg", "detect_status"] == "not_decodable"
    assert df.loc["broken_now.jpg", "detect_error"]
    for rel in [*rels, "trunc.jpg"]:
        row = df.loc[rel]
        # random weights find no 'motorcycle' (the yaml model has numbered classes)
        assert row["detect_status"] == "no_motorbike"
        assert row["n_motorbikes"] == 0
        assert len(row["detections"]) > 0            # garbage, but recorded
        w, h = Image.open(mp.parent / "cache/repaired/ab/abc.png").size if rel == "trunc.jpg" \
            else (row["width"], row["height"])
        for dd in row["detections"]:
            assert set(dd) == {"label", "conf", "x0", "y0", "x1", "y1"}
            assert -1 <= dd["x0"] <= dd["x1"] <= w + 1 and -1 <= dd["y0"] <= dd["y1"] <= h + 1
        assert pd.isna(row["crop_path"]) and row["crop_box"] is None
        assert row["detector"] == "ultralytics:yolo11n.yaml(random-init)"
        assert len(row["weights_sha256"]) == 64 and row["ultralytics_version"]
    assert str(m.df["detect_status"].dtype) == "string"
    assert str(m.df["n_motorbikes"].dtype) == "Int32"
    assert str(m.df["cut_off"].dtype) == "boolean"
    assert m.df["box_area_frac"].dtype == np.float32
    assert m.stage_params("detect")["conf"] == pytest.approx(1e-4)
    # nothing was written next to the user's photos
    assert not any(p.name.startswith(".") or "cache" in p.parts
                   for p in (mp.parent.parent / "photos").rglob("*"))


def test_resume_skips_done_rows_and_redoes_on_new_options(synthetic, random_detector):
    from curate.detect import detect_manifest

    mp, _ = synthetic
    calls: list[int] = []
    _spy(random_detector, calls, fail_on_call=3)
    try:
        with pytest.raises(KeyboardInterrupt):
            detect_manifest(mp, _opts(checkpoint_every=1), progress=False, detector=random_detector)
        part = read_manifest(mp).df
        assert part["detect_status"].notna().sum() >= 6   # two batches + undecodable rows kept
        calls.clear()
        _spy(random_detector, calls)
        detect_manifest(mp, _opts(), progress=False, detector=random_detector)
        assert calls == [2]                               # only the unfinished batch
        first = read_manifest(mp).df
        calls.clear()
        detect_manifest(mp, _opts(), progress=False, detector=random_detector)
        assert calls == []                                # all done with the same key
        again = read_manifest(mp).df
        pd.testing.assert_series_equal(first["detect_key"], again["detect_key"])
        calls.clear()
        detect_manifest(mp, _opts(conf=2e-4), progress=False, detector=random_detector)
        assert sum(calls) == 8                            # new options: redone
    finally:
        _unspy(random_detector)


def _rgba_and_truncated(root: Path) -> None:
    """alpha.png (left half transparent: repair composites it on --background), trunc.jpg (70% of
    its bytes: recovered by default, unrecoverable with --min-recovered 0.95) and a plain rgb.jpg."""
    import io

    root.mkdir(parents=True)
    rgba = np.array(_picture(120, 90, 1).convert("RGBA"))
    rgba[:, :60, 3] = 0
    Image.fromarray(rgba).save(root / "alpha.png")
    buf = io.BytesIO()
    _picture(160, 120, 2).save(buf, "JPEG", quality=95)
    (root / "trunc.jpg").write_bytes(buf.getvalue()[: int(len(buf.getvalue()) * 0.7)])
    _picture(100, 80, 3).save(root / "rgb.jpg")


def test_rows_whose_repaired_copy_changed_or_vanished_are_detected_again(tmp_path, random_detector):
    from curate.detect import detect_manifest
    from curate.repair import RepairOptions, repair_manifest
    from curate.scan import scan_folder

    _rgba_and_truncated(tmp_path / "photos")
    mp = tmp_path / "work" / "manifest.parquet"
    scan_folder(tmp_path / "photos", mp, workers=1, progress=False)
    first = repair_manifest(mp, workers=1, progress=False).df.set_index("path")
    assert first.loc["trunc.jpg", "repair_action"] == "recovered"
    calls: list[int] = []
    _spy(random_detector, calls)
    try:
        detect_manifest(mp, _opts(), progress=False, detector=random_detector)
        assert sum(calls) == 3
        calls.clear()
        detect_manifest(mp, _opts(), progress=False, detector=random_detector)
        assert calls == []
        before = read_manifest(mp).df.set_index("path")
        # repair again with other options: a new copy of alpha.png, trunc.jpg now unrecoverable
        repair_manifest(mp, RepairOptions(background="#ff0000", min_recovered=0.95), workers=1,
                        progress=False)
        calls.clear()
        after = detect_manifest(mp, _opts(), progress=False, detector=random_detector).df.set_index("path")
        assert calls == [1]                                # alpha.png only
        assert after.loc["alpha.png", "repaired_path"] != before.loc["alpha.png", "repaired_path"]
        assert after.loc["alpha.png", "detect_key"] != before.loc["alpha.png", "detect_key"]
        assert after.loc["trunc.jpg", "repair_action"] == "unrecoverable"
        assert after.loc["trunc.jpg", "detect_status"] == "not_decodable"
        assert after.loc["trunc.jpg", "detections"] is None
        assert after.loc["rgb.jpg", "detect_key"] == before.loc["rgb.jpg", "detect_key"]
        # the repaired copy vanishes from the cache: detected again, now without pixels
        (mp.parent / after.loc["alpha.png", "repaired_path"]).unlink()
        calls.clear()
        gone = detect_manifest(mp, _opts(), progress=False, detector=random_detector).df.set_index("path")
        assert gone.loc["alpha.png", "detect_status"] == "not_decodable"
        assert calls == []
    finally:
        _unspy(random_detector)


def test_group_batches_groups_by_key_and_bounds_the_wait():
    from curate.detect_stream import group_batches

    items = [("a", 0), ("b", 1), ("a", 2), ("a", 3), ("b", 4), ("c", 5), ("a", 6), ("b", 7)]
    got = list(group_batches(items, key=lambda t: t[0], size=3, window=100))
    assert [[i for _, i in g] for g in got] == [[0, 2, 3], [1, 4, 7], [5], [6]]
    # a small window sends the largest waiting group early
    got = list(group_batches(items, key=lambda t: t[0], size=3, window=3))
    assert sorted(i for g in got for _, i in g) == list(range(8))
    assert all(len(g) <= 3 and len({k for k, _ in g}) == 1 for g in got)
    assert [[i for _, i in g] for g in got][:2] == [[0, 2], [1, 4]]


def test_rect_letterbox_in_the_decode_threads_changes_nothing(random_detector):
    """A prepared (letterboxed) image gives the same detections, in original pixels, as the image."""
    from ultralytics.data.augment import LetterBox

    bgr = np.ascontiguousarray(np.asarray(_picture(150, 90, 5))[:, :, ::-1])
    prep, key = random_detector.prepare(bgr, 160)
    assert key == (96, 160) and prep.shape[:2] == key
    # ultralytics' own rect letterbox leaves a prepared image as it is
    assert np.array_equal(LetterBox([160, 160], auto=True, stride=32)(image=prep), prep)
    direct = random_detector.predict([bgr], imgsz=160, conf=1e-4)[0]
    mapped = random_detector.predict([prep], imgsz=160, conf=1e-4, orig_shapes=[bgr.shape[:2]])[0]
    assert len(direct) == len(mapped) > 0
    for a, b in zip(sorted(direct, key=_box_key), sorted(mapped, key=_box_key)):
        assert a["label"] == b["label"] and a["conf"] == pytest.approx(b["conf"])
        assert [a[k] for k in ("x0", "y0", "x1", "y1")] == pytest.approx([b[k] for k in ("x0", "y0", "x1", "y1")],
                                                                          abs=1e-3)
        assert 0 <= b["x0"] <= b["x1"] <= 150 and 0 <= b["y0"] <= b["y1"] <= 90


def _box_key(d):
    return (round(d["x0"], 2), round(d["y0"], 2), round(d["x1"], 2), round(d["y1"], 2), d["label"])


def test_empty_manifest_and_bad_options_are_user_errors(tmp_path):
    from curate.detect import detect_manifest

    mp = tmp_path / "m.parquet"
    write_manifest(pd.DataFrame({"sample_id": pd.Series([], dtype="string"),
                                 "path": pd.Series([], dtype="string"),
                                 "crop_index": pd.Series([], dtype="Int32"),
                                 "status": pd.Series([], dtype="string")}), mp, stage="scan",
                   root=str(tmp_path))
    with pytest.raises(UserError, match="no rows"):
        detect_manifest(mp, _opts(), progress=False)
    with pytest.raises(UserError, match="--per-image"):
        _opts(per_image="some").validate()
    with pytest.raises(UserError, match="--conf"):
        _opts(conf=0).validate()


# --------------------------------------------------------------------------- CLI errors

def _cli(args) -> int:
    from curate.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code or 0
    return 0


def test_cli_missing_weights_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    _picture(64, 48, 1).save(tmp_path / "photos" / "a.jpg")
    rc = _cli(["detect", str(tmp_path / "photos"), "-o", str(tmp_path / "w"),
               "--weights", str(tmp_path / "missing.pt")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "missing.pt" in err and "--weights" in err
    assert not (tmp_path / "w" / "manifest.parquet").exists()   # failed before scanning


def test_cli_empty_folder_and_argument_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _cli(["detect", str(tmp_path / "empty"), "-o", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no files" in err
    assert _cli(["detect", "-o", str(tmp_path / "w")]) == 2            # neither FOLDER nor --manifest
    assert "exactly one" in capsys.readouterr().err
    assert _cli(["detect", "--manifest", str(tmp_path / "nope.parquet")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_unreadable_weights_subprocess(tmp_path, synthetic):
    mp, _ = synthetic
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer" * 64)
    proc = subprocess.run(
        [sys.executable, "-c", "from curate.cli import main; main()", "detect", "--manifest", str(mp),
         "--weights", str(bad), "--no-progress"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("curate: error:")]
    assert len(lines) == 1 and "bad.tflite" in lines[0] and "--weights" in lines[0]


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
