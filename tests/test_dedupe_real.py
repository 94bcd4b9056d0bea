"""Dedupe on real photos, its CLI, odd rows, and keeper quality."""
from __future__ import annotations

import shutil

import pytest
from PIL import Image

from curate.dedupe import DedupeOptions, dedupe_manifest
from curate.hashing import load_rgb
from manifests import read_manifest, sample_id, write_manifest

from tests.test_dedupe import by_path, dup_folder, jpeg_bytes, make_manifest, pd_isna, photo, scan_rows  # noqa: F401  (fixtures and helpers shared with test_dedupe.py)


@pytest.mark.slow
def test_real_photos_near_duplicates(tmp_path, caltech):
    """Real Caltech photos with a resized, a mirrored and a re-encoded copy each: grouped in threes."""
    root = tmp_path / "photos"
    root.mkdir()
    srcs = sorted(caltech.glob("*.jpg"))[5:800:100]
    names = []
    for k, p in enumerate(srcs):
        img = load_rgb(p)
        shutil.copy(p, root / f"p{k}.jpg")
        img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.Resampling.LANCZOS).save(
            root / f"p{k}_small.jpg", quality=90)
        img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / f"p{k}_mirror.jpg", quality=90)
        (root / f"p{k}_q50.jpg").write_bytes(jpeg_bytes(img, quality=50))
        names += [f"p{k}.jpg", f"p{k}_small.jpg", f"p{k}_mirror.jpg", f"p{k}_q50.jpg"]
    mp = make_manifest(tmp_path, root, sorted(names))
    dedupe_manifest(mp, DedupeOptions(workers=1), progress=False)
    rows = by_path(read_manifest(mp))
    for k in range(len(srcs)):
        g = {rows[f"p{k}{s}.jpg"]["dup_group"] for s in ("", "_small", "_mirror", "_q50")}
        assert len(g) == 1 and not pd_isna(next(iter(g))), k
        assert rows[f"p{k}_small.jpg"]["is_duplicate"] is True
    assert len({rows[f"p{k}.jpg"]["dup_group"] for k in range(len(srcs))}) == len(srcs)


def test_cli_dedupe_and_errors(tmp_path, dup_folder, capsys):
    from curate.cli import main

    root, names, status = dup_folder
    mp = make_manifest(tmp_path, root, names, status=status)
    main(["dedupe", "--manifest", str(mp), "--workers", "1", "--no-progress"])   # returns on success
    out = capsys.readouterr().out
    assert "1 duplicate group(s), 4 duplicate(s) marked, 2 not hashable" in out
    with pytest.raises(SystemExit) as e:
        main(["dedupe", "--manifest", str(tmp_path / "nope.parquet")])
    assert e.value.code == 2
    assert "manifest not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["dedupe", "--manifest", str(mp), "--method", "md5"])
    assert e.value.code == 2


def test_symlink_loop_and_missing_file_rows(tmp_path):
    """Unreadable rows (a link loop, a vanished file) get null hashes and scores, never a crash."""
    import os

    import pandas as pd

    from curate.score import ScoreOptions, score_manifest

    root = tmp_path / "photos"
    root.mkdir()
    photo(1).save(root / "ok.png")
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    rows = scan_rows(root, ["ok.png"])
    for name in ("loop_a", "gone.jpg"):
        rows.append({"sample_id": sample_id("0" * 64, name, 0), "path": name, "crop_index": 0,
                     "status": "unreadable" if name == "loop_a" else "ok"})
    df = pd.DataFrame(rows)
    df["crop_index"] = df["crop_index"].astype("Int32")
    mp = tmp_path / "work" / "manifest.parquet"
    write_manifest(df, mp, stage="scan", params={}, root=str(root))
    dedupe_manifest(mp, DedupeOptions(workers=1), progress=False)
    score_manifest(mp, ScoreOptions(workers=1), progress=False)
    r = by_path(read_manifest(mp))
    for name in ("loop_a", "gone.jpg"):
        assert pd_isna(r[name]["phash"]) and pd_isna(r[name]["is_duplicate"])
        assert pd_isna(r[name]["blur_raw"]) and r[name]["score_error"]
    assert r["gone.jpg"]["hash_error"].startswith("FileNotFoundError")
    assert not pd_isna(r["ok.png"]["phash"]) and not pd_isna(r["ok.png"]["blur_raw"])


def test_keeper_quality_measured_only_without_score_columns(tmp_path):
    from curate.dedupe import hash_row

    p = tmp_path / "a.png"
    photo(3).save(p)
    job = {"sample_id": "s", "sample": str(p), "decoded": str(p), "box": None, "box_side": None,
           "usable": True}
    measured = hash_row({**job, "measure": True}, "phash")
    reused = hash_row({**job, "measure": False}, "phash")
    assert measured["q_sharp"] > 0 and measured["q_busy"] is not None
    assert "q_sharp" not in reused and "q_busy" not in reused
    assert reused["phash"] == measured["phash"] and reused["q_area"] == measured["q_area"]


@pytest.mark.slow
def test_real_pipeline_groups_resized_and_mirrored_copies(tmp_path, caltech, tflite_weights, curate_cli):
    """Through detection the crop box moves between a photo and its copies (crop hashes alone
    found 6 of 10 mirrors here); the whole-photo hashes must group every copy with its original."""
    from PIL import ImageOps

    photos = tmp_path / "photos"
    photos.mkdir()
    names = [f"image_{i:04d}.jpg" for i in range(100, 108)]
    for n in names:
        with Image.open(caltech / n) as im:
            im = im.convert("RGB")
        im.save(photos / n, quality=95)
        ImageOps.mirror(im).save(photos / f"mirror_{n}", quality=90)
        im.resize((round(im.width * 0.7), round(im.height * 0.7)), Image.Resampling.LANCZOS).save(
            photos / f"small_{n}", quality=90)
    code, _, err = curate_cli(["run", str(photos), "-o", str(tmp_path / "work"), "--weights", str(tflite_weights),
                               "--workers", "1", "--no-report"])
    assert code == 0, err
    rows = by_path(read_manifest(tmp_path / "work" / "manifest.parquet"))
    for n in names:
        group = {rows[p]["dup_group"] for p in (n, f"mirror_{n}", f"small_{n}")}
        assert len(group) == 1 and None not in group, (n, [rows[p]["dup_reason"] for p in (n, f"mirror_{n}")])
    groups = [rows[n]["dup_group"] for n in names]
    assert len(set(groups)) == len(names), "distinct photos stay in distinct groups"
