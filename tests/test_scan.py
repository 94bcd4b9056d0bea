"""`curate scan`: the zoo, rescans, SIGKILL resume, permissions, odd names, real photos."""
from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from curate.cli import main as curate_main
from curate.scan import DEFAULT_MAX_PIXELS, ScanOptions, scan_folder
from curate.sniff import declared_size, ext_mismatch, sniff_format
from manifests import file_sha256, read_manifest
from common.errors import UserError
from tests.zoo import make_zoo, picture

CURATE = [sys.executable, "-c", "from curate.cli import main; main()"]


def _regular_files(root: Path) -> dict[str, tuple[str, int, int]]:
    """relpath -> (sha256, mode, mtime_ns) of every readable regular file (links not followed)."""
    out = {}
    for p in root.rglob("*"):
        st = p.lstat()
        if stat.S_ISREG(st.st_mode) and os.access(p, os.R_OK):
            try:
                out[p.relative_to(root).as_posix()] = (file_sha256(p), st.st_mode, st.st_mtime_ns)
            except PermissionError:
                continue
    return out


def _run_cli(args, capsys):
    try:
        curate_main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def zoo(tmp_path):
    root = tmp_path / "zoo"
    return root, make_zoo(root)


def test_zoo_every_file_once_with_expected_status(zoo, tmp_path):
    root, expected = zoo
    before = _regular_files(root)
    m = scan_folder(root, tmp_path / "work" / "manifest.parquet", workers=2, progress=False)
    df = m.df
    assert m.root == str(root.resolve()) and Path(m.root).is_absolute()
    assert sorted(df["path"]) == sorted(expected), "every zoo entry exactly once, nothing else"
    assert df["sample_id"].is_unique
    assert (df["crop_index"] == 0).all()
    rows = df.set_index("path")
    for rel, exp in expected.items():
        row = rows.loc[rel]
        assert row["status"] == exp["status"], (rel, exp["kind"], row["error"])
        if exp["status"] != "ok":
            assert isinstance(row["error"], str) and row["error"], rel
        else:
            assert pd.isna(row["error"]), (rel, row["error"])
        for col in ("format", "ext_mismatch", "mode", "n_frames", "exif_orientation"):
            if col in exp:
                assert row[col] == exp[col], (rel, col, row[col], exp[col])
        if "error_contains" in exp:
            assert exp["error_contains"] in row["error"], (rel, row["error"])
    # ok rows carry their geometry and content hash; sample_id follows the content
    ok = df[df["status"] == "ok"]
    assert ok["width"].notna().all() and ok["height"].notna().all() and ok["sha256"].notna().all()
    assert rows.loc["ok.jpg", "sha256"] == file_sha256(root / "ok.jpg")
    assert rows.loc["ok.jpg", "sample_id"].startswith(rows.loc["ok.jpg", "sha256"][:16])
    assert rows.loc["link_to_ok.jpg", "sha256"] == rows.loc["ok.jpg", "sha256"]
    assert rows.loc["link_to_ok.jpg", "sample_id"] != rows.loc["ok.jpg", "sample_id"]
    # unreadable rows have no content hash and still a stable id
    assert pd.isna(rows.loc["broken_link.jpg", "sha256"])
    assert _regular_files(root) == before, "scan must not touch the originals"
    rec = m.history[-1]
    assert rec["stage"] == "scan" and rec["params"]["complete"] is True
    assert rec["params"]["max_pixels"] == DEFAULT_MAX_PIXELS


def test_rescan_reuses_adds_changes_and_marks_missing(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(4):
        picture(64, 48, seed=i).save(root / f"p{i}.jpg")
    mpath = tmp_path / "w" / "m.parquet"
    m1 = scan_folder(root, mpath, workers=1, progress=False)
    ids1 = dict(zip(m1.df["path"], m1.df["sample_id"]))

    picture(64, 48, seed=10).save(root / "new.jpg")            # added
    picture(80, 60, seed=11).save(root / "p1.jpg")             # changed (size differs)
    (root / "p2.jpg").unlink()                                 # gone
    m2 = scan_folder(root, mpath, workers=1, progress=False)
    rows = m2.df.set_index("path")
    assert sorted(rows.index) == ["new.jpg", "p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg"]
    assert rows.loc["p0.jpg", "sample_id"] == ids1["p0.jpg"]
    assert rows.loc["p1.jpg", "sample_id"] != ids1["p1.jpg"] and rows.loc["p1.jpg", "width"] == 80
    assert rows.loc["p2.jpg", "status"] == "unreadable"
    assert rows.loc["p2.jpg", "error"].startswith("missing since last scan (was ok)")
    assert rows.loc["p2.jpg", "sample_id"] == ids1["p2.jpg"], "a gone file keeps its id"
    params = m2.history[-1]["params"]
    assert params["reused"] == 2 and params["scanned"] == 2          # p0, p3 reused; new, p1 scanned
    assert [h["stage"] for h in m2.history] == ["scan", "scan"]

    # the file comes back: scanned again, status ok
    picture(64, 48, seed=2).save(root / "p2.jpg")
    m3 = scan_folder(root, mpath, workers=1, progress=False)
    assert m3.df.set_index("path").loc["p2.jpg", "status"] == "ok"
    assert len(m3.df) == 5


def test_rehash_detects_same_size_same_mtime_edit(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    p = root / "a.png"
    Image.new("RGB", (32, 32), (10, 20, 30)).save(p)
    mpath = tmp_path / "m.parquet"
    scan_folder(root, mpath, workers=1, progress=False)
    st = p.stat()
    Image.new("RGB", (32, 32), (10, 20, 31)).save(p)  # same size on disk (same encoder, flat image)
    assert p.stat().st_size == st.st_size
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    stale = scan_folder(root, mpath, workers=1, progress=False)
    assert stale.df.loc[0, "sha256"] != file_sha256(p), "size+mtime alone cannot see this edit"
    fresh = scan_folder(root, mpath, ScanOptions(rehash=True), workers=1, progress=False)
    assert fresh.df.loc[0, "sha256"] == file_sha256(p)
    again = scan_folder(root, mpath, ScanOptions(rehash=True), workers=1, progress=False)
    assert again.df.loc[0, "sample_id"] == fresh.df.loc[0, "sample_id"]
    assert again.history[-1]["params"]["reused"] == 1, "hashed, found unchanged, not decoded"


def test_rescan_keeps_other_stage_columns(tmp_path):
    from curate.repair import repair_manifest

    root = tmp_path / "photos"
    root.mkdir()
    picture(64, 48, seed=1).convert("L").save(root / "grey.jpg")
    picture(64, 48, seed=2).save(root / "rgb.jpg")
    mpath = tmp_path / "m.parquet"
    scan_folder(root, mpath, workers=1, progress=False)
    repaired = repair_manifest(mpath, workers=1, progress=False)
    before = repaired.df.set_index("path")["repair_action"].to_dict()
    picture(64, 48, seed=3).save(root / "added.jpg")
    m = scan_folder(root, mpath, workers=1, progress=False)
    after = m.df.set_index("path")
    assert after.loc["grey.jpg", "repair_action"] == before["grey.jpg"] == "converted"
    assert after.loc["rgb.jpg", "repair_action"] == "none"
    assert pd.isna(after.loc["added.jpg", "repair_action"])


def _many_images(root: Path, n: int) -> None:
    root.mkdir(parents=True)
    base = picture(96, 72, seed=0)
    for i in range(n):
        sub = root / f"d{i % 4}"
        sub.mkdir(exist_ok=True)
        base.rotate(i % 360).save(sub / f"img_{i:04d}.jpg", quality=85)


def _children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (Linux /proc)."""
    out = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat_file.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.mark.slow
def test_sigkill_half_way_then_rerun_lists_every_file_once(tmp_path):
    root = tmp_path / "many"
    n = 400
    _many_images(root, n)
    mpath = tmp_path / "work" / "manifest.parquet"
    cmd = [*CURATE, "scan", str(root), "-o", str(mpath), "--workers", "2", "--no-progress",
           "--checkpoint-every", "10"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    try:
        while not mpath.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint written"
            time.sleep(0.01)
        if Path("/proc/self/stat").exists():
            workers = _children(proc.pid)
            assert workers, "the scan runs worker processes"
        os.kill(proc.pid, signal.SIGKILL)     # the scan itself, as the OOM killer would
        proc.wait(timeout=30)
        gone_by = time.monotonic() + 15
        while any(_alive(w) for w in workers) and time.monotonic() < gone_by:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "worker processes outlived the killed scan"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # never leave anything behind
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    partial = read_manifest(mpath)          # valid (atomic writes), but incomplete
    assert 0 < len(partial.df) < n
    assert partial.history[-1]["params"]["complete"] is False
    assert partial.df["path"].is_unique

    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    final = read_manifest(mpath)
    assert len(final.df) == n and final.df["path"].is_unique
    assert set(final.df["path"]) == {p.relative_to(root).as_posix() for p in root.rglob("*.jpg")}
    assert (final.df["status"] == "ok").all()
    params = final.history[-1]["params"]
    assert params["complete"] is True and params["reused"] >= len(partial.df)
    assert not list(mpath.parent.glob(".*.tmp")), "no temporary files left behind"


def _privilege_drop_prefix(probe: Path) -> list[str] | None:
    """A command prefix under which `probe` (mode 000) cannot be read, or None if there is none."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            return None
        caps = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]
    check = subprocess.run([*prefix, sys.executable, "-c", f"open({str(probe)!r}, 'rb')"],
                           capture_output=True, text=True, timeout=60)
    return prefix if "PermissionError" in check.stderr else None


def test_permission_denied_is_unreadable(tmp_path):
    """Root reads any file, so the scan runs with the DAC-override capabilities dropped
    (util-linux `setpriv`); for a normal user the permission bits apply as they are."""
    root = tmp_path / "perm"
    root.mkdir()
    picture(64, 48).save(root / "ok.jpg")
    picture(64, 48, seed=3).save(root / "locked.jpg")
    os.chmod(root / "locked.jpg", 0)
    prefix = _privilege_drop_prefix(root / "locked.jpg")
    if prefix is None:
        pytest.skip("cannot run unprivileged here (root without a working setpriv)")
    (root / "locked_dir").mkdir()
    picture(64, 48, seed=4).save(root / "locked_dir" / "inside.jpg")
    os.chmod(root / "locked_dir", 0)
    mpath = tmp_path / "m.parquet"
    try:
        res = subprocess.run([*prefix, *CURATE, "scan", str(root), "-o", str(mpath), "--no-progress"],
                             capture_output=True, text=True, timeout=120)
    finally:
        os.chmod(root / "locked_dir", 0o755)
    assert res.returncode == 0, res.stderr
    rows = read_manifest(mpath).df.set_index("path")
    assert sorted(rows.index) == ["locked.jpg", "locked_dir", "ok.jpg"]
    assert rows.loc["locked.jpg", "status"] == "unreadable"
    assert "Permission denied" in rows.loc["locked.jpg", "error"]
    assert rows.loc["locked_dir", "status"] == "unreadable"
    assert "cannot list folder" in rows.loc["locked_dir", "error"]
    assert rows.loc["ok.jpg", "status"] == "ok"


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
