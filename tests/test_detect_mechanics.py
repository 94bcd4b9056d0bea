"""The detect stage's mechanics with a random-init model: statuses, resume, repaired copies, batching, CLI errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from manifests import read_manifest, write_manifest
from common.errors import UserError

RANDOM_INIT = "yolo11n.yaml"

from tests.test_detect import _manifest_for, _one_thread, _picture, _spy, _unspy  # noqa: F401  (fixtures and helpers shared with test_detect.py)


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
