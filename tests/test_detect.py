"""`curate detect`: box geometry, weights resolution, the batched/resumable run, real detection, CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from manifests import file_sha256, sample_id, write_manifest
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
