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
from manifests import file_sha256, read_manifest
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


def test_jpeg_checked_at_one_eighth_scale_gets_the_status_of_a_full_decode(tmp_path, shared_data, monkeypatch):
    """`curate scan` decodes a JPEG at 1/8 scale (`draft`): the whole stream is still read, so cut
    and corrupted files get the same status and error as when decoded at full size."""
    import random

    from PIL.JpegImagePlugin import JpegImageFile

    from curate.probe import probe_file

    rng = random.Random(0)
    names = []
    for k, p in enumerate(sorted((shared_data / "web" / "bikes").glob("*.jpg"))[:15]):
        b = p.read_bytes()
        noise = bytes(rng.randrange(256) for _ in range(300))
        for j, v in enumerate((b, b[: len(b) // 2], b[:-200], b[:200] + noise + b[500:],
                               b[: len(b) // 3] + b"\0" * 500 + b[len(b) // 3 + 500:])):
            (tmp_path / f"{k}-{j}.jpg").write_bytes(v)
            names.append(f"{k}-{j}.jpg")
    scaled = [probe_file(str(tmp_path), n) for n in names]
    monkeypatch.setattr(JpegImageFile, "draft", lambda self, mode, size: None)
    full = [probe_file(str(tmp_path), n) for n in names]
    assert scaled == full
    statuses = {r["status"] for r in full}
    assert "ok" in statuses and len(statuses) >= 2          # the cut and corrupted ones fail
