"""Scan on odd paths and folders: symlinks, names, manifests and caches inside the folder, links out of it; the CLI; real photos."""
from __future__ import annotations

import os
import sys

import pandas as pd
import pytest
from PIL import Image

from curate.scan import DEFAULT_MAX_PIXELS, ScanOptions, scan_folder
from curate.sniff import declared_size, ext_mismatch, sniff_format
from manifests import read_manifest
from common.errors import UserError
from tests.zoo import picture

CURATE = [sys.executable, "-c", "from curate.cli import main; main()"]

from tests.test_scan import _run_cli  # noqa: F401  (fixtures and helpers shared with test_scan.py)


def test_symlinked_folders(tmp_path):
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    picture(32, 24).save(root / "real" / "a.jpg")
    outside = tmp_path / "outside"
    outside.mkdir()
    picture(32, 24, seed=5).save(outside / "b.jpg")
    os.symlink(root / "real", root / "alias")       # into the tree: not followed
    os.symlink(outside, root / "ext")               # out of the tree: followed once (--follow-links)
    os.symlink(outside, root / "ext2")              # the same folder again: not followed
    os.symlink(root, outside / "back")              # loops back into the root (via ext)
    m = scan_folder(root, tmp_path / "m.parquet", ScanOptions(follow_links=True), workers=1, progress=False)
    rows = m.df.set_index("path")
    assert sorted(rows.index) == ["alias", "ext/b.jpg", "ext/back", "ext2", "real/a.jpg"]
    assert rows.loc["real/a.jpg", "status"] == rows.loc["ext/b.jpg", "status"] == "ok"
    assert "listed under 'real'" in rows.loc["alias", "error"]
    assert "already scanned" in rows.loc["ext2", "error"]
    assert rows.loc["ext/back", "status"] == "unreadable"


def test_name_that_is_not_utf8(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    picture(16, 16).save(root / "fine.jpg")
    try:
        with open(os.path.join(os.fsencode(root), b"bad\xff.jpg"), "wb") as f:
            f.write(b"x")
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    m = scan_folder(root, tmp_path / "m.parquet", workers=1, progress=False)
    rows = m.df.set_index("path")
    assert rows.loc["bad\\xff.jpg", "status"] == "unreadable"
    assert "not valid UTF-8" in rows.loc["bad\\xff.jpg", "error"]


def test_manifest_inside_the_scanned_folder_is_not_scanned(tmp_path):
    from curate.repair import repair_manifest

    for where in (".", "work"):
        root = tmp_path / f"photos-{where}"
        root.mkdir()
        picture(32, 24).convert("L").save(root / "a.jpg")
        mpath = root / where / "manifest.parquet"
        scan_folder(root, mpath, workers=1, progress=False)
        repair_manifest(mpath, workers=1, progress=False)   # writes cache/ beside the manifest
        m = scan_folder(root, mpath, workers=1, progress=False)
        assert list(m.df["path"]) == ["a.jpg"], mpath
        assert m.history[-1]["params"]["excluded"]


def test_cli_scan_and_bad_folders(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dash = tmp_path / "-photos"
    dash.mkdir()
    picture(32, 24).save(dash / "-x.jpg")
    code, out, err = _run_cli(["scan", "-o", "m.parquet", "--no-progress", "--", "-photos"], capsys)
    assert code == 0, err
    assert "1 files" in out and "ok: 1" in out
    assert list(read_manifest(tmp_path / "m.parquet").df["path"]) == ["-x.jpg"]

    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("x")
    cases = {"missing": "not found", "afile": "not a folder", "empty": "no files found"}
    for arg, needle in cases.items():
        code, out, err = _run_cli(["scan", arg, "-o", "x.parquet"], capsys)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, (arg, err)
    code, _, err = _run_cli(["scan", "-photos", "-o", "m.parquet"], capsys)
    assert code == 2, "without --, a leading dash is an option"
    code, _, err = _run_cli(["scan", str(tmp_path / "empty"), "-o", "m.parquet"], capsys)
    assert code == 2 and "lists files of" in err, "a manifest belongs to one folder"
    code, _, err = _run_cli(["scan", "--workers", "0", "-o", "y.parquet", "--", "-photos"], capsys)
    assert code == 2 and "--workers" in err
    code, out, _ = _run_cli(["scan", "--help"], capsys)
    assert code == 0 and "Examples:" in out


def test_sniff_and_declared_size_agree_with_pillow(tmp_path):
    pic = picture(123, 45)
    for fmt, kw in [("JPEG", {}), ("PNG", {}), ("GIF", {}), ("WEBP", {}), ("WEBP", {"lossless": True}),
                    ("BMP", {}), ("TIFF", {})]:
        p = tmp_path / f"x.{fmt.lower()}"
        pic.save(p, fmt, **kw)
        head = p.read_bytes()[:65536]
        assert sniff_format(head) == fmt
        size = declared_size(head, fmt)
        assert size in (None, (123, 45)), (fmt, size)
        if fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP"):
            assert size == (123, 45), fmt
    assert sniff_format(b"<!doctype html><html>") == "HTML"
    assert sniff_format(b"\x00\x01\x02garbage") is None
    assert ext_mismatch(".JPG", "JPEG") is False and ext_mismatch(".jpg", "WEBP") is True
    assert ext_mismatch(".weird", "JPEG") is None


@pytest.mark.slow
def test_real_photos_all_ok(shared_data, tmp_path):
    root = shared_data / "motorbikes"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    m = scan_folder(root, tmp_path / "m.parquet", workers=2, progress=False)
    df = m.df
    assert sorted(df["path"]) == files and len(files) >= 844
    bad = df[df["status"] != "ok"]
    assert bad.empty, bad[["path", "status", "error"]].head().to_string()
    assert (df["format"] == "JPEG").all() and not df["ext_mismatch"].any()
    assert df["sample_id"].is_unique
    assert any(p.startswith("cctv/-") for p in df["path"]), "names with a leading dash are kept"


def test_photos_beside_a_manifest_in_a_subfolder_get_rows(tmp_path):
    """Only our outputs beside the manifest are left out, not the user's photos in its folder."""
    from curate.repair import repair_manifest
    from curate.report import write_report
    from manifests import write_manifest

    root = tmp_path / "p1"
    (root / "2019").mkdir(parents=True)
    picture(32, 24, seed=1).save(root / "a.jpg")
    picture(32, 24, seed=2).convert("L").save(root / "2019" / "b.jpg")
    picture(32, 24, seed=3).save(root / "2019" / "c.jpg")
    (root / "2019" / "report2").mkdir()                     # a user folder: scanned
    picture(32, 24, seed=4).save(root / "2019" / "report2" / "d.jpg")
    pd.DataFrame({"x": [1, 2]}).to_parquet(root / "2019" / "table.parquet")  # not a manifest: scanned
    mpath = root / "2019" / "manifest.parquet"
    m = scan_folder(root, mpath, workers=1, progress=False)
    assert sorted(m.df["path"]) == ["2019/b.jpg", "2019/c.jpg", "2019/report2/d.jpg", "2019/table.parquet",
                                    "a.jpg"]
    repair_manifest(mpath, workers=1, progress=False)          # cache/ beside the manifest
    write_report(mpath, root / "2019" / "report")              # our report/ beside it
    clean = root / "2019" / "clean.parquet"
    write_manifest(read_manifest(mpath), clean, stage="filter")  # another manifest beside it
    (root / "2019" / ".clean.parquet.x1y2.tmp").write_bytes(b"left by a killed write")
    again = scan_folder(root, mpath, workers=1, progress=False)
    assert sorted(again.df["path"]) == sorted(m.df["path"])
    excluded = again.history[-1]["params"]["excluded"]
    folder = os.path.realpath(root / "2019")
    ours = [".clean.parquet.x1y2.tmp", "cache", "clean.parquet", "manifest.parquet", "report"]
    assert sorted(excluded) == sorted(os.path.join(folder, n) for n in ours)


def test_a_report_folder_that_is_not_ours_is_scanned(tmp_path):
    root = tmp_path / "photos"
    (root / "report").mkdir(parents=True)
    picture(32, 24).save(root / "report" / "a.jpg")
    (root / "report" / "index.html").write_text("<html><title>My trip</title></html>")
    m = scan_folder(root, root / "manifest.parquet", workers=1, progress=False)
    m = scan_folder(root, root / "manifest.parquet", workers=1, progress=False)
    assert sorted(m.df["path"]) == ["report/a.jpg", "report/index.html"]
    # left out: the manifest, and our cache/ (it holds the folder's lock, see curate.work_lock)
    assert sorted(m.history[-1]["params"]["excluded"]) == [os.path.realpath(root / n)
                                                          for n in ("cache", "manifest.parquet")]


def test_output_folder_reached_through_a_symlink_is_not_scanned(tmp_path):
    from curate.repair import repair_manifest

    for case in ("work under a link to the root", "link in the root to the work folder"):
        base = tmp_path / case.replace(" ", "_")
        root = base / "photos"
        root.mkdir(parents=True)
        picture(32, 24).convert("L").save(root / "a.jpg")      # repair writes a copy to cache/
        if case.startswith("work"):
            os.symlink(root, base / "link")
            mpath = base / "link" / "work" / "manifest.parquet"
        else:
            (base / "out").mkdir()
            os.symlink("../out", root / "outlink")
            mpath = base / "out" / "manifest.parquet"
        scan_folder(root, mpath, ScanOptions(follow_links=True), workers=1, progress=False)
        repair_manifest(mpath, workers=1, progress=False)
        for _ in range(2):
            m = scan_folder(root, mpath, workers=1, progress=False)     # the choice is remembered
            assert list(m.df["path"]) == ["a.jpg"], (case, list(m.df["path"]))
        assert len(m.history[-1]["params"]["excluded"]) == 2, case   # the manifest and cache/


def test_rescan_with_another_max_pixels_reprobes_every_file(tmp_path, caplog):
    from curate.repair import repair_manifest

    root = tmp_path / "photos"
    root.mkdir()
    picture(64, 48, seed=1).save(root / "a.jpg")
    picture(30, 20, seed=2).save(root / "small.jpg")
    mpath = tmp_path / "w" / "m.parquet"
    m = scan_folder(root, mpath, workers=1, progress=False)
    repair_manifest(mpath, workers=1, progress=False)
    ids = dict(zip(m.df["path"], m.df["sample_id"]))
    with caplog.at_level("WARNING", logger="curate.scan"):
        lower = scan_folder(root, mpath, ScanOptions(max_pixels=1000), workers=1, progress=False)
    assert "--max-pixels 89478485 -> 1000" in caplog.text
    rows = lower.df.set_index("path")
    assert rows.loc["a.jpg", "status"] == "too_large" and "1000" in rows.loc["a.jpg", "error"]
    assert rows.loc["small.jpg", "status"] == "ok"
    assert pd.isna(rows.loc["a.jpg", "repair_action"]), "made for the old status: cleared"
    assert rows.loc["small.jpg", "repair_action"] == "none", "status unchanged: kept"
    assert dict(zip(lower.df["path"], lower.df["sample_id"])) == ids
    assert lower.history[-1]["params"]["reprobed_for"] == ["max_pixels"]
    same = scan_folder(root, mpath, ScanOptions(max_pixels=1000), workers=1, progress=False)
    assert same.history[-1]["params"]["reused"] == 2, "same limit: reused by size and mtime"
    kept = scan_folder(root, mpath, ScanOptions(rehash=True), workers=1, progress=False)
    assert kept.df.set_index("path").loc["a.jpg", "status"] == "too_large", "an unset limit keeps the last one"
    back = scan_folder(root, mpath, ScanOptions(max_pixels=DEFAULT_MAX_PIXELS), workers=1, progress=False)
    assert (back.df["status"] == "ok").all() and back.df["error"].isna().all()


def test_rows_of_an_interrupted_rescan_keep_the_older_limit_in_view():
    """A killed scan re-probed only part of the rows: the limit of the last complete scan counts too."""
    from curate.scan import _changed_verdict_params
    from manifests.io import Manifest

    def scan(max_pixels, complete):
        return {"stage": "scan", "params": {"max_pixels": max_pixels, "complete": complete}}

    m = Manifest(df=pd.DataFrame(), history=[scan(1000, True), {"stage": "repair", "params": {}},
                                              scan(5000, False)])
    assert _changed_verdict_params(m, ScanOptions(max_pixels=5000)) == {"max_pixels": (1000, 5000)}
    m.history.append(scan(5000, True))
    assert _changed_verdict_params(m, ScanOptions(max_pixels=5000)) == {}
    assert _changed_verdict_params(None, ScanOptions()) == {}


def test_a_users_cache_folder_is_scanned_and_never_written_into(tmp_path):
    """Our derived-file folders are tagged (CACHEDIR.TAG); a user's folder of that name is theirs."""
    from curate.pipeline import RunOptions, run_pipeline

    photos = tmp_path / "photos"
    (photos / "album" / "cache").mkdir(parents=True)
    Image.new("RGB", (32, 32), (9, 9, 9)).save(photos / "album" / "cache" / "mybike.png")
    Image.new("RGB", (32, 32), (90, 9, 9)).save(photos / "a.png")
    scan_folder(photos, photos / "album" / "manifest.parquet", workers=1, progress=False)
    paths = read_manifest(photos / "album" / "manifest.parquet").df["path"].tolist()
    assert sorted(paths) == ["a.png", "album/cache/mybike.png"]
    with pytest.raises(UserError, match="holds files motocurate did not write"):
        run_pipeline(photos, photos / "album", RunOptions(weights="yolo11n.yaml", report=False), progress=False)
    with pytest.raises(UserError, match="holds files motocurate did not write"):   # photos in a folder named cache
        run_pipeline(photos / "album" / "cache", photos / "album", RunOptions(weights="yolo11n.yaml"), progress=False)
    assert sorted(p.name for p in (photos / "album" / "cache").iterdir()) == ["mybike.png"]


def test_links_into_our_cache_are_not_scanned(tmp_path):
    from manifests.paths import cache_dir

    photos, work = tmp_path / "photos", tmp_path / "work"
    photos.mkdir()
    Image.new("RGB", (32, 32), (90, 9, 9)).save(photos / "a.png")
    scan_folder(photos, work / "manifest.parquet", workers=1, progress=False)
    Image.new("RGB", (32, 32), (9, 90, 9)).save(cache_dir(work / "manifest.parquet", "crops") / "c.png")
    (photos / "crops_link").symlink_to(work / "cache" / "crops")
    (photos / "crop_file_link.png").symlink_to(work / "cache" / "crops" / "c.png")
    scan_folder(photos, work / "manifest.parquet", workers=1, progress=False)
    assert read_manifest(work / "manifest.parquet").df["path"].tolist() == ["a.png"]


def test_links_out_of_the_folder_are_rows_not_walks(tmp_path, curate_cli):
    """A scraped folder's link to /etc (or /) is not walked, a link to a file outside is not read:
    each is one row with status outside_folder; --follow-links opts in; links inside still work."""
    root = tmp_path / "scrape"
    (root / "sub").mkdir(parents=True)
    picture(32, 24).save(root / "sub" / "a.jpg")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    picture(32, 24, seed=3).save(outside / "secret.jpg")
    os.symlink("/etc", root / "etc")
    os.symlink(outside / "secret.jpg", root / "photo.jpg")
    os.symlink(outside, root / "folder")
    os.symlink(root, root / "sub" / "self")              # into the tree: a loop, reported as before
    os.symlink(root / "sub" / "a.jpg", root / "inside.jpg")   # a file link inside: read as a photo
    mpath = tmp_path / "work" / "manifest.parquet"
    code, out, err = curate_cli(["scan", str(root), "-o", str(mpath), "--workers", "1", "--no-progress"])
    assert code == 0, err
    rows = read_manifest(mpath).df.set_index("path")
    assert sorted(rows.index) == ["etc", "folder", "inside.jpg", "photo.jpg", "sub/a.jpg", "sub/self"]
    for link, kind in (("etc", "folder"), ("folder", "folder"), ("photo.jpg", "file")):
        assert rows.loc[link, "status"] == "outside_folder", link
        assert f"symlink to a {kind} outside the scanned folder" in rows.loc[link, "error"]
        assert "--follow-links" in rows.loc[link, "error"]
        assert pd.isna(rows.loc[link, "sha256"])           # the target was not read
    assert rows.loc["inside.jpg", "status"] == rows.loc["sub/a.jpg", "status"] == "ok"
    assert rows.loc["sub/self", "status"] == "unreadable"
    assert "outside_folder: 3" in out

    (root / "etc").unlink()                                   # (no test walks the real /etc)
    code, _, err = curate_cli(["scan", str(root), "-o", str(tmp_path / "w2" / "m.parquet"), "--workers", "1",
                               "--no-progress", "--follow-links"])
    assert code == 0, err
    rows = read_manifest(tmp_path / "w2" / "m.parquet").df.set_index("path")
    assert sorted(rows.index) == ["folder/secret.jpg", "inside.jpg", "photo.jpg", "sub/a.jpg", "sub/self"]
    assert rows.loc["photo.jpg", "status"] == "ok" and rows.loc["folder/secret.jpg", "status"] == "ok"
