"""Packs and the manifest: rows hold their samples' pixels, rebuilt only when stale, locked, byte-identical."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from manifests import read_manifest, write_manifest
from common.errors import UserError
from preprocess.pack import (PREP_STATUSES, PackError, PrepOptions, ensure_pack, load_pack,
                             preprocess_manifest)
from preprocess.packfile import sidecar_path
from preprocess.square import (FILLS, MODES, crop_geometry, magnification, pad_geometry, square_image,
                               to_rgb)

BG, FG = (200, 200, 200), (10, 10, 10)
LANCZOS = Image.Resampling.LANCZOS

from tests.test_preprocess import aspect, bike, build_manifest, colour, derived, mtime, reference_pad  # noqa: F401  (fixtures and helpers shared with test_preprocess.py)


# --------------------------------------------------------------------------- pack and manifest

def test_pack_rows_hold_their_samples_pixels(tmp_path):
    work = tmp_path / "work"
    crop = derived(work, "crop.png", bike(80, 60, bg=(255, 0, 0)))
    repaired = derived(work, "repaired.png", bike(200, 100, bg=(0, 0, 255)))
    mp = build_manifest(tmp_path, 6, specs=[
        {"name": "with_crop.jpg", "image": bike(bg=(0, 255, 0)), "crop_path": crop},
        {"name": "with_repair.jpg", "image": bike(bg=(0, 255, 0)), "repaired_path": repaired},
        {"name": "tiny.png", "image": bike(10, 5)},
        {"name": "rejected.jpg", "image": bike(bg=(0, 255, 0))},
        {"name": "missing_crop.jpg", "image": bike(bg=(0, 255, 0)), "crop_path": "cache/derived/gone.png"},
    ], keep=[True] * 6 + [True, True, True, False, True])
    info = preprocess_manifest(mp, PrepOptions(size=32), progress=False)
    assert info.rebuilt and info.npy_path == (work / "pack" / "pad-black-32.npy").resolve()
    assert info.counts == {"packed": 8, "too_small": 1, "error": 1, "skipped": 1}
    arr, ids = load_pack(info.npy_path)
    assert arr.shape == (8, 32, 32, 3) and arr.dtype == np.uint8 and info.n == 8

    m = read_manifest(mp)
    df = m.df.set_index("path")
    packed = df[df["prep_status"] == "packed"]
    assert len(packed) == 8 and sorted(packed["pack_index"].tolist()) == list(range(8))
    for path, row in packed.iterrows():
        i = int(row["pack_index"])
        assert ids[i] == row["sample_id"]
        if pd.notna(row.get("crop_path")):
            src = work / row["crop_path"]
        elif pd.notna(row.get("repaired_path")):
            src = work / row["repaired_path"]
        else:
            src = tmp_path / "photos" / path
        assert np.array_equal(arr[i], reference_pad(src, 32)), path
    # the colour proves which file was used: the crop (red) and repaired copy (blue), not the green photo
    row_of = {p: int(df.loc[p, "pack_index"]) for p in ("with_crop.jpg", "with_repair.jpg")}
    assert arr[row_of["with_crop.jpg"]][5, 1].tolist() == pytest.approx([255, 0, 0], abs=3)
    assert arr[row_of["with_repair.jpg"]][9, 1].tolist() == pytest.approx([0, 0, 255], abs=3)
    k3 = int(df.loc["bike_03.jpg", "pack_index"])
    assert arr[k3][9, 1].tolist() == pytest.approx(list(colour(3)), abs=4)

    assert df.loc["tiny.png", "prep_status"] == "too_small" and pd.isna(df.loc["tiny.png", "pack_index"])
    assert "max_upscale" in df.loc["tiny.png", "prep_reason"]
    assert df.loc["tiny.png", "prep_scale"] == pytest.approx(3.2)
    assert df.loc["rejected.jpg", "prep_status"] == "skipped"
    assert df.loc["rejected.jpg", "prep_reason"] == "keep is not true"    # no reject_reason column here
    assert df.loc["missing_crop.jpg", "prep_status"] == "error"
    assert "gone.png" in df.loc["missing_crop.jpg", "prep_reason"]
    params = m.stage_params("preprocess")
    assert params["pack"] == "pack/pad-black-32.npy" and params["fingerprint"] == info.fingerprint
    assert params["size"] == 32 and params["mode"] == "pad" and params["fill"] == "black"
    assert json.loads(info.ids_path.read_text())["ids"] == ids


def test_selection_without_keep_column(tmp_path):
    mp = build_manifest(tmp_path, 3, specs=[
        {"name": "broken.jpg", "image": b"\xff\xd8 not really a jpeg", "status": "corrupt"},
        {"name": "nobike.jpg", "image": bike(bg=(0, 0, 0))},
    ], extra={"detect_status": ["ok", "ok", "ok", "not_decodable", "no_motorbike"]})
    info = preprocess_manifest(mp, PrepOptions(size=16), progress=False)
    df = read_manifest(mp).df.set_index("path")
    assert info.n == 3
    assert df.loc["broken.jpg", "prep_status"] == "skipped"
    assert df.loc["broken.jpg", "prep_reason"] == "status corrupt"
    assert df.loc["nobike.jpg", "prep_reason"] == "detect_status no_motorbike"
    assert df["pack_index"].isna().sum() == 2


def test_too_small_is_upscaled_only_up_to_the_limit(tmp_path):
    mp = build_manifest(tmp_path, 1, specs=[{"name": "small.png", "image": bike(40, 20)},     # needs 1.6x
                                            {"name": "tiny.png", "image": bike(20, 10)}])     # needs 3.2x
    info = preprocess_manifest(mp, PrepOptions(size=64), progress=False)
    df = read_manifest(mp).df.set_index("path")
    assert info.n == 2 and df.loc["small.png", "prep_status"] == "packed"
    assert df.loc["tiny.png", "prep_status"] == "too_small"
    assert df.loc["tiny.png", "prep_scale"] == pytest.approx(3.2)
    arr, _ = load_pack(info.npy_path)
    upscaled = arr[int(df.loc["small.png", "pack_index"])][16:48]       # 40x20 -> 64x32
    assert aspect(upscaled) == pytest.approx(aspect(np.asarray(bike(40, 20))), rel=0.1)
    info = preprocess_manifest(mp, PrepOptions(size=64, max_upscale=4), progress=False)
    df = read_manifest(mp).df.set_index("path")
    assert info.n == 3 and df.loc["tiny.png", "prep_status"] == "packed"
    one = build_manifest(tmp_path / "only", 0, specs=[{"name": "tiny.png", "image": bike(20, 10)}])
    with pytest.raises(UserError, match="none of 1 selected"):
        preprocess_manifest(one, PrepOptions(size=64), progress=False)
    assert read_manifest(one).df["prep_status"].tolist() == ["too_small"]
    assert not (one.parent / "pack" / "pad-black-64.npy").exists()
    assert not list((one.parent / "pack").glob(".*.tmp"))


def test_the_progress_bar_reaches_the_end(tmp_path, capsys):
    mp = build_manifest(tmp_path, 3)
    preprocess_manifest(mp, progress=True)
    assert "3/3" in capsys.readouterr().err


def test_nothing_selected_is_a_user_error(tmp_path):
    mp = build_manifest(tmp_path, 2, keep=[False, None])
    with pytest.raises(UserError, match="no rows to pack"):
        preprocess_manifest(mp, progress=False)


def test_a_users_own_pack_folder_is_never_written_into(tmp_path):
    mp = build_manifest(tmp_path, 2)
    mine = mp.parent / "pack"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"\xff\xd8\xff mine")
    (mine / "crop-bike.jpg").write_bytes(b"\xff\xd8\xff mine too")       # named like ours, but no pack file
    with pytest.raises(UserError, match="holds files motocurate did not write"):
        preprocess_manifest(mp, progress=False)
    assert sorted(p.name for p in mine.iterdir()) == ["crop-bike.jpg", "holiday.jpg"]
    (mine / "holiday.jpg").unlink()
    with pytest.raises(UserError, match="holds files motocurate did not write"):
        preprocess_manifest(mp, progress=False)
    mine.rename(tmp_path / "moved")
    mine.symlink_to(tmp_path / "nowhere")
    with pytest.raises(UserError, match="broken symbolic link"):
        preprocess_manifest(mp, progress=False)
    info = preprocess_manifest(mp, out_dir=tmp_path / "elsewhere", progress=False)   # -o elsewhere works
    assert info.npy_path.exists()


def test_pack_is_byte_identical_across_runs_and_worker_counts(tmp_path):
    # 36 samples so that workers=2 really runs a process pool
    rng = np.random.default_rng(1)
    specs = [{"name": f"noise_{k:02d}.png",
              "image": Image.fromarray(rng.integers(0, 256, (37 + k, 90 - k, 3), dtype=np.uint8))}
             for k in range(30)]
    specs.append({"name": "tiny.png", "image": bike(8, 4)})          # too small: the pack is trimmed
    mp = build_manifest(tmp_path, 6, specs=specs)
    a = preprocess_manifest(mp, PrepOptions(size=24, workers=1), tmp_path / "a", progress=False)
    b = preprocess_manifest(mp, PrepOptions(size=24, workers=2), tmp_path / "b", progress=False)
    assert a.n == b.n == 36 and a.fingerprint == b.fingerprint
    assert a.npy_path.read_bytes() == b.npy_path.read_bytes()
    assert json.loads(a.ids_path.read_text())["ids"] == json.loads(b.ids_path.read_text())["ids"]
    first = a.npy_path.read_bytes()
    again = preprocess_manifest(mp, PrepOptions(size=24, workers=2), tmp_path / "a", progress=False)
    assert again.npy_path.read_bytes() == first
    with pytest.MonkeyPatch.context() as mpatch:                         # workers started by spawn
        mpatch.setenv("MOTOCURATE_START_METHOD", "spawn")
        spawned = preprocess_manifest(mp, PrepOptions(size=24, workers=2), tmp_path / "c", progress=False)
    assert spawned.npy_path.read_bytes() == first
    # the trimmed file is exactly what numpy itself writes for that array
    arr, _ = load_pack(a.npy_path, mmap=False)
    np.save(tmp_path / "ref.npy", arr)
    assert (tmp_path / "ref.npy").read_bytes() == first
    assert not list((tmp_path / "a").glob(".*.tmp"))


@pytest.mark.parametrize("header_grows", [False, True])
def test_pack_writer_trims_to_what_numpy_writes(tmp_path, monkeypatch, header_grows):
    from preprocess import packfile

    if header_grows:  # force the copy path taken when the shorter shape changes the header length
        real = packfile._header
        monkeypatch.setattr(packfile, "_header", lambda shape: real(shape) + b" " * 64 * (shape[0] == 5))
    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    with packfile.PackWriter(tmp_path / "p.npy", capacity=5, size=8) as w:
        for im in imgs:
            w.append(im)
        w.commit({"ids": ["a", "b", "c"]})
    np.save(tmp_path / "ref.npy", imgs)
    assert (tmp_path / "p.npy").read_bytes() == (tmp_path / "ref.npy").read_bytes()
    assert load_pack(tmp_path / "p.npy")[1] == ["a", "b", "c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "p.npy", "ref.npy"]


def test_ensure_pack_rebuilds_only_when_stale(tmp_path):
    mp = build_manifest(tmp_path, 5)
    opts = PrepOptions(size=16)
    first = ensure_pack(mp, opts, progress=False)
    assert first.rebuilt and first.n == 5
    t_npy, t_man = mtime(first.npy_path), mtime(mp)

    second = ensure_pack(mp, opts, progress=False)
    assert not second.rebuilt and second.fingerprint == first.fingerprint
    assert mtime(first.npy_path) == t_npy and mtime(mp) == t_man      # nothing rewritten
    assert not ensure_pack(mp, PrepOptions(size=16, workers=2), progress=False).rebuilt

    # a parameter that changes pixels: rebuilt in place
    up = ensure_pack(mp, PrepOptions(size=16, max_upscale=3), progress=False)
    assert up.rebuilt and up.npy_path == first.npy_path and up.fingerprint != first.fingerprint
    # fill matters only for pad
    r1 = ensure_pack(mp, PrepOptions(size=16, mode="resize", fill="black"), progress=False)
    r2 = ensure_pack(mp, PrepOptions(size=16, mode="resize", fill="white"), progress=False)
    assert r1.rebuilt and not r2.rebuilt and r1.fingerprint == r2.fingerprint

    # an input that changes: one sample is no longer kept
    base = ensure_pack(mp, opts, progress=False)
    m = read_manifest(mp)
    m.df["keep"] = pd.array([True, True, False, True, True], dtype="boolean")
    write_manifest(m, mp, stage="filter")
    fewer = ensure_pack(mp, opts, progress=False)
    assert fewer.rebuilt and fewer.n == 4 and fewer.fingerprint != base.fingerprint

    # a new crop box for one sample (as `curate detect` with another margin would write)
    m = read_manifest(mp)
    m.df["crop_box"] = pd.Series([[0, 0, 100, 50]] + [None] * (len(m.df) - 1), dtype=object)
    write_manifest(m, mp, stage="detect")
    assert ensure_pack(mp, opts, progress=False).rebuilt
    assert not ensure_pack(mp, opts, progress=False).rebuilt

    # an image file rewritten under the same path
    bike(bg=(1, 2, 3)).save(tmp_path / "photos" / "bike_00.jpg")
    assert ensure_pack(mp, opts, progress=False).rebuilt
    assert not ensure_pack(mp, opts, progress=False).rebuilt

    # a pack replaced behind our back is not trusted
    info = ensure_pack(mp, opts, progress=False)
    arr, _ = load_pack(info.npy_path, mmap=False)
    np.save(info.npy_path, np.zeros_like(arr))
    healed = ensure_pack(mp, opts, progress=False)
    assert healed.rebuilt and np.array_equal(load_pack(healed.npy_path)[0], arr)


def test_ensure_pack_restores_columns_without_rebuilding(tmp_path):
    mp = build_manifest(tmp_path, 4, specs=[{"name": "tiny.png", "image": bike(10, 5)}])
    info = ensure_pack(mp, PrepOptions(size=32), progress=False)
    t_npy = mtime(info.npy_path)
    m = read_manifest(mp)
    expected = m.df[["sample_id", "pack_index", "prep_status"]].copy()
    m.df = m.df.drop(columns=["pack_index", "prep_status", "prep_reason", "prep_scale"])
    write_manifest(m, mp, stage="filter")                              # e.g. a later stage rewrote it
    again = ensure_pack(mp, PrepOptions(size=32), progress=False)
    assert not again.rebuilt and mtime(info.npy_path) == t_npy
    after = read_manifest(mp).df[["sample_id", "pack_index", "prep_status"]]
    pd.testing.assert_frame_equal(after.reset_index(drop=True), expected.reset_index(drop=True))


def test_concurrent_ensure_pack_builds_once(tmp_path):
    mp = build_manifest(tmp_path, 4)
    code = ("import sys\n"
            "from preprocess.pack import PrepOptions, ensure_pack, load_pack\n"
            "info = ensure_pack(sys.argv[1], PrepOptions(size=16, workers=1), progress=False)\n"
            "arr, ids = load_pack(info.npy_path)\n"
            "print(info.rebuilt, len(ids), int(arr.sum()))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(mp)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    results = sorted(o[0].split() for o in outs)
    assert [r[0] for r in results] == ["False", "True"]                # one built, the other waited
    assert results[0][1:] == results[1][1:] and results[0][1] == "4"
    history = [r["stage"] for r in read_manifest(mp).history]
    assert history.count("preprocess") == 1


def test_png_copies_follow_the_pack(tmp_path):
    mp = build_manifest(tmp_path, 4)
    info = ensure_pack(mp, PrepOptions(size=16), progress=False)
    assert info.png_dir is None
    t_npy = mtime(info.npy_path)
    withpng = ensure_pack(mp, PrepOptions(size=16, png=True), progress=False)
    assert not withpng.rebuilt and mtime(info.npy_path) == t_npy       # PNGs come from the pack
    arr, ids = load_pack(withpng.npy_path)
    files = sorted(withpng.png_dir.glob("*.png"))
    assert len(files) == 4
    for i, sid in enumerate(ids):
        assert np.array_equal(np.asarray(Image.open(withpng.png_dir / f"{sid}.png")), arr[i])
    m = read_manifest(mp)
    m.df["keep"] = pd.array([True, False, True, True], dtype="boolean")
    write_manifest(m, mp, stage="filter")
    fewer = ensure_pack(mp, PrepOptions(size=16, png=True), progress=False)
    assert fewer.rebuilt and len(list(fewer.png_dir.glob("*.png"))) == 3   # the dropped sample's PNG went
    arr, ids = load_pack(fewer.npy_path)
    assert all(np.array_equal(np.asarray(Image.open(fewer.png_dir / f"{sid}.png")), arr[i])
               for i, sid in enumerate(ids))
    (fewer.png_dir / "notes.txt").write_text("mine")                       # not ours: left alone
    m.df["keep"] = pd.array([True, True, True, True], dtype="boolean")
    write_manifest(m, mp, stage="filter")
    nopng = ensure_pack(mp, PrepOptions(size=16), progress=False)          # rebuilt without PNGs
    assert nopng.rebuilt and nopng.png_dir is None
    assert [p.name for p in fewer.png_dir.iterdir()] == ["notes.txt"]      # stale PNGs removed


def test_load_pack_checks_and_needs_no_pyarrow(tmp_path):
    mp = build_manifest(tmp_path, 3)
    info = preprocess_manifest(mp, PrepOptions(size=16), progress=False)
    arr, ids = load_pack(info.npy_path)
    assert isinstance(arr, np.memmap) and len(ids) == 3
    copy, _ = load_pack(info.npy_path, mmap=False)
    assert not isinstance(copy, np.memmap) and np.array_equal(copy, arr)
    code = (
        "import sys\n"
        "for name in ('pyarrow', 'pandas', 'manifests'):\n"
        "    sys.modules[name] = None  # importing them now fails\n"
        "from preprocess.pack import load_pack, PrepOptions\n"
        f"arr, ids = load_pack({str(info.npy_path)!r})\n"
        "print(arr.shape, len(ids), PrepOptions().size)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(3, 16, 16, 3) 3 128"
    side = sidecar_path(info.npy_path)
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**meta, "ids": meta["ids"][:2]}))
    with pytest.raises(PackError, match="3 images but 2 sample_ids"):
        load_pack(info.npy_path)
    side.unlink()
    with pytest.raises(PackError, match="sidecar not found"):
        load_pack(info.npy_path)
