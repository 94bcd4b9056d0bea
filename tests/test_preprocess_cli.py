"""The preprocess CLI, and packs of real photos."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from manifests import file_sha256, read_manifest, sample_id, write_manifest
from common.errors import UserError
from preprocess.pack import (PREP_STATUSES, PackError, PrepOptions, ensure_pack, load_pack,
                             preprocess_manifest)
from preprocess.square import (FILLS, MODES, crop_geometry, magnification, pad_geometry, square_image,
                               to_rgb)

BG, FG = (200, 200, 200), (10, 10, 10)
LANCZOS = Image.Resampling.LANCZOS

from tests.test_preprocess import build_manifest, reference_pad  # noqa: F401  (fixtures and helpers shared with test_preprocess.py)


# --------------------------------------------------------------------------- CLI

def run_cli(args, capsys):
    from preprocess.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_builds_then_reports_up_to_date(tmp_path, capsys):
    mp = build_manifest(tmp_path, 3)
    code, out, _ = run_cli(["--manifest", str(mp), "--size", "16", "--mode", "crop", "--png"], capsys)
    assert code == 0 and "pack built: 3 images 16x16" in out
    assert (tmp_path / "work" / "pack" / "crop-16.npy").exists()
    assert len(list((tmp_path / "work" / "pack" / "crop-16-png").glob("*.png"))) == 3
    code, out, _ = run_cli(["--manifest", str(mp), "--size", "16", "--mode", "crop"], capsys)
    assert code == 0 and "up to date" in out
    code, out, _ = run_cli(["--manifest", str(mp), "--size", "16", "--mode", "crop", "--force",
                            "-o", str(tmp_path / "elsewhere")], capsys)
    assert code == 0 and "pack built" in out and (tmp_path / "elsewhere" / "crop-16.npy").exists()


@pytest.mark.parametrize("args, message", [
    (["--manifest", "{tmp}/nope.parquet"], "nope.parquet: no such file"),
    (["--manifest", "{tmp}/photos/bike_00.jpg"], "not a readable Parquet manifest"),
    (["--manifest", "{mp}", "--size", "0"], "--size"),
    (["--manifest", "{mp}", "--size", "big"], "--size"),
    (["--manifest", "{mp}", "--mode", "zoom"], "--mode"),
    (["--manifest", "{mp}", "--max-upscale", "0.5"], "--max-upscale"),
    (["--manifest", "{mp}", "--max-upscale", "nan"], "max_upscale must be a finite number"),
    (["--manifest", "{mp}", "--max-upscale", "inf"], "max_upscale must be a finite number"),
    (["--manifest", "{mp}", "-o", "{mp}/sub"], "m.parquet is a file, not a folder"),
    (["--size", "64"], "--manifest"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    mp = build_manifest(tmp_path, 1)
    args = [a.format(tmp=tmp_path, mp=mp) for a in args]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and err.startswith("preprocess: error:")


def test_a_wrong_manifest_leaves_nothing_in_its_folder(tmp_path, capsys):
    mp = build_manifest(tmp_path, 2)
    photos = tmp_path / "photos"
    before = sorted(photos.rglob("*"))
    code, _, err = run_cli(["--manifest", str(photos / "bike_00.jpg")], capsys)
    assert code == 2 and "not a readable Parquet manifest" in err
    with pytest.raises(UserError, match="not a readable Parquet manifest"):
        ensure_pack(photos / "bike_01.jpg", PrepOptions(size=16), progress=False)
    assert sorted(photos.rglob("*")) == before                       # no pack/ folder, no .lock
    info = ensure_pack(mp, PrepOptions(size=16), progress=False)
    assert not list(info.npy_path.parent.glob("*.lock"))              # released and removed


def test_the_pack_lock_excludes_other_processes_although_its_file_is_removed(tmp_path):
    """Each process increments a counter file by read, pause, write under the lock: a lost update
    would show if two ever held it at once (e.g. one on a removed lock file, one on its successor)."""
    counter = tmp_path / "count"
    counter.write_text("0")
    code = ("import sys, time\n"
            "from pathlib import Path\n"
            "from preprocess.pack_lock import locked as _locked\n"
            "folder, counter = Path(sys.argv[1]), Path(sys.argv[2])\n"
            "for _ in range(40):\n"
            "    with _locked(folder, 'p'):\n"
            "        n = int(counter.read_text())\n"
            "        time.sleep(0.001)\n"
            "        counter.write_text(str(n + 1))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "pack"), str(counter)],
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    assert counter.read_text() == "120"
    assert not list((tmp_path / "pack").glob("*.lock"))


def test_cli_help_has_examples(capsys):
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0 and "Examples:" in out and "--max-upscale" in out


# --------------------------------------------------------------------------- real photos

@pytest.mark.slow
def test_caltech_photos_pack(tmp_path, caltech):
    files = sorted(caltech.glob("*.jpg"))
    assert len(files) > 700
    rows = []
    for p in files:
        sha = file_sha256(p)
        rows.append({"sample_id": sample_id(sha, p.name), "path": p.name, "crop_index": 0,
                     "status": "ok", "sha256": sha})
    mp = tmp_path / "m.parquet"
    write_manifest(pd.DataFrame(rows), mp, stage="scan", root=str(caltech.resolve()))
    info = preprocess_manifest(mp, PrepOptions(size=128, workers=2), progress=False)
    assert info.n == len(files) and info.counts["too_small"] == 0       # ~260x160: all shrink
    arr, ids = load_pack(info.npy_path)
    df = read_manifest(mp).df
    by_id = dict(zip(df["sample_id"], df["path"]))
    greys = []
    for i, sid in enumerate(ids):
        with Image.open(caltech / by_id[sid]) as im:
            w, h = im.size
            if im.mode == "L":
                greys.append(i)
        nw, nh, left, top = pad_geometry(w, h, 128)
        a = arr[i]
        assert (a[:top] == 0).all() and (a[top + nh:] == 0).all()
        assert (a[:, :left] == 0).all() and (a[:, left + nw:] == 0).all()
        if i % 100 == 0:
            assert np.array_equal(a, reference_pad(caltech / by_id[sid], 128))
    assert greys                                                         # 7 greyscale photos
    for i in greys:
        assert (arr[i][..., 0] == arr[i][..., 1]).all() and (arr[i][..., 1] == arr[i][..., 2]).all()
    assert not ensure_pack(mp, PrepOptions(size=128, workers=2), progress=False).rebuilt
