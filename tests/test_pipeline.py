"""`curate run` refuses bad work folders up front, and the pictures survive odd files."""
import os

import pytest
from PIL import Image

from curate.contact_sheet import SheetOptions, contact_sheet, thumbnail
from curate.pipeline import RunOptions, run_pipeline
from common.errors import UserError


def test_work_folder_cannot_be_the_photo_folder_or_a_file(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    with pytest.raises(UserError, match="cannot be the photo folder"):
        run_pipeline(tmp_path, tmp_path, RunOptions(weights="yolo11n.yaml"), progress=False)
    with pytest.raises(UserError, match="not a folder"):
        run_pipeline(tmp_path, tmp_path / "a.jpg", RunOptions(weights="yolo11n.yaml"), progress=False)


def test_missing_weights_fail_before_the_scan(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(UserError, match="--weights"):
        run_pipeline(tmp_path / "photos", tmp_path / "work", RunOptions(weights=str(tmp_path / "no.pt")),
                     progress=False)
    assert not (tmp_path / "work" / "manifest.parquet").exists()


def test_contact_sheet_with_a_fifo_and_a_newline_in_a_name(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    odd = tmp_path / "a\nb.png"
    Image.new("RGB", (40, 30), (200, 0, 0)).save(odd)
    assert thumbnail(fifo, 32) is None          # never opened: it would block
    out = contact_sheet([(fifo, "pipe.jpg"), (odd, odd.name)], tmp_path / "sheet.png",
                        SheetOptions(tile=32, cols=2))
    with Image.open(out) as im:
        assert im.size[0] >= 64


def test_rescan_of_a_manifest_without_an_optional_column(tmp_path):
    from curate.scan import scan_folder
    from manifests import read_manifest, write_manifest

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (40, 30), (0, 90, 0)).save(photos / "a.png")
    path = tmp_path / "work" / "manifest.parquet"
    scan_folder(photos, path, workers=1, progress=False)
    m = read_manifest(path)
    m.df = m.df.drop(columns=["icc_profile"])   # as written by an older version
    write_manifest(m, path, stage="scan")
    Image.new("RGB", (40, 30), (0, 0, 90)).save(photos / "b.png")
    df = scan_folder(photos, path, workers=1, progress=False).df
    assert sorted(df["path"]) == ["a.png", "b.png"] and (df["status"] == "ok").all()


def test_run_refuses_weights_that_are_no_model_before_the_scan(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (40, 30), (0, 90, 0)).save(photos / "a.jpg")
    with pytest.raises(UserError, match="--weights .*a.jpg: not a model"):
        run_pipeline(photos, tmp_path / "work", RunOptions(weights=str(photos / "a.jpg")), progress=False)
    assert not (tmp_path / "work" / "manifest.parquet").exists()


@pytest.mark.parametrize("name", ["scan", "detect", "run"])
def test_help_examples_parse(name, curate_cli, tmp_path, monkeypatch):
    """Every example in a command's --help is accepted by its parser (`--` comes after the options)."""
    import shlex

    from curate.cli import cli

    monkeypatch.chdir(tmp_path)
    for folder in ("photos", "-odd-name-folder", "-odd-folder-name"):
        (tmp_path / folder).mkdir()

    code, out, _ = curate_cli([name, "--help"])
    assert code == 0
    examples = [shlex.split(line.split("#")[0]) for line in out.splitlines()
                if line.strip().startswith(f"curate {name} ")]
    assert examples, out
    cmd = cli.get_command(None, name)
    for argv in examples:
        ctx = cmd.make_context(f"curate {name}", argv[2:])     # raises on unexpected arguments
        if "--" in argv:
            assert str(ctx.params["folder"]) == argv[argv.index("--") + 1]


def test_run_keeps_the_max_pixels_of_an_earlier_scan(tmp_path, caplog):
    from curate.scan import ScanOptions, scan_folder
    from manifests import read_manifest

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(photos / "small.png")
    Image.new("RGB", (400, 300), (30, 30, 200)).save(photos / "large.png")
    work = tmp_path / "work"
    scan_folder(photos, work / "manifest.parquet", ScanOptions(max_pixels=50_000), workers=1, progress=False)
    run_pipeline(photos, work, RunOptions(weights="yolo11n.yaml", device="cpu", workers=1, report=False),
                 progress=False)
    df = read_manifest(work / "manifest.parquet").df.set_index("path")
    assert df.loc["large.png", "status"] == "too_large" and df.loc["small.png", "status"] == "ok"
    assert "re-probing" not in caplog.text
    m = read_manifest(work / "manifest.parquet")
    assert m.stage_params("score")["workers"] == 1 and m.stage_params("dedupe")["workers"] == 1   # --workers reaches them


def test_summary_counts_samples_when_they_are_not_files():
    from curate.pipeline import RunResult

    res = RunResult(manifest=None, clean=None, report=None, files_in=3, repaired=0, kept=4,
                    removed={"busy": 1}, samples=5)
    assert ("samples (one per motorbike)", 5) in res.summary_rows()
    assert all(k != "samples (one per motorbike)" for k, _ in RunResult(None, None, None, 3, 0, 3, samples=3).summary_rows())


def _die(chunk):
    os._exit(1)                      # a worker killed (the OOM killer, say)


def test_a_worker_that_dies_is_one_line(tmp_path):
    from common.pool import map_chunks

    with pytest.raises(UserError, match="a worker process died"):
        list(map_chunks(_die, list(range(40)), workers=2, chunk_size=4, progress=False, desc="score"))


def test_a_second_run_on_the_same_work_folder_says_who_holds_it(tmp_path, curate_cli):
    """Two runs on one -o: the second stops in one line naming the holder; a killed holder's lock
    is taken over by the next run (the kernel drops a dead process's flock)."""
    import signal
    import subprocess
    import sys
    import time

    from curate.work_lock import LOCK_NAME

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(photos / "a.png")
    from manifests.paths import claim_folder

    work = tmp_path / "work"
    work.mkdir()
    claim_folder(work / "cache")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from curate.work_lock import work_lock\n"
         "with work_lock(Path(sys.argv[1]), Path(sys.argv[2])):\n    print('held', flush=True); time.sleep(120)",
         str(work / "cache"), str(work)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = curate_cli(["run", str(photos), "-o", str(work), "--weights", "yolo11n.yaml", "--no-report"])
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "another curate run is working in this folder" in err and f"pid {holder.pid}" in err
        assert not (work / "manifest.parquet").exists()          # the second run wrote nothing
    finally:
        os.killpg(holder.pid, signal.SIGKILL)                     # the holder dies without cleaning up
        holder.wait(timeout=30)
    assert (work / "cache" / LOCK_NAME).exists()                  # its lock file stays behind ...
    deadline = time.time() + 5
    code, err = None, ""
    while time.time() < deadline:                                 # ... and the next run takes it over
        code, _, err = curate_cli(["run", str(photos), "-o", str(work), "--weights", "yolo11n.yaml",
                                   "--no-report"])
        if code == 0:
            break
        time.sleep(0.2)
    assert code == 0, err
    assert (work / "manifest.parquet").exists()


def test_a_stage_on_a_locked_work_folder_says_who_holds_it(tmp_path, curate_cli):
    """Every stage that rewrites a manifest holds its folder's lock (the one `curate run` takes):
    a second writer stops in one line and the manifest is untouched; once the holder is gone, the
    stage runs."""
    import signal
    import subprocess
    import sys

    photos, work = tmp_path / "photos", tmp_path / "work"
    photos.mkdir()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(photos / "a.png")
    manifest = work / "manifest.parquet"
    assert curate_cli(["scan", str(photos), "-o", str(manifest), "--no-progress"])[0] == 0
    before = manifest.read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from curate.work_lock import manifest_lock\n"
         "with manifest_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)", str(manifest)],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for args in (["scan", str(photos), "-o", str(manifest), "--no-progress"],
                     ["repair", "--manifest", str(manifest), "--no-progress"],
                     ["score", "--manifest", str(manifest), "--no-progress"],
                     ["dedupe", "--manifest", str(manifest), "--no-progress"],
                     ["filter", "--manifest", str(manifest)]):
            code, _, err = curate_cli(args)
            assert code == 2 and len(err.strip().splitlines()) == 1, (args, err)
            assert f"pid {holder.pid}" in err and f"{work}: another curate run" in err, (args, err)
        assert manifest.read_bytes() == before
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    code, _, err = curate_cli(["repair", "--manifest", str(manifest), "--no-progress"])
    assert code == 0, err


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    """`curate run` holds the work folder's lock and calls stages that take the same lock."""
    from curate.work_lock import manifest_lock

    (tmp_path / "manifest.parquet").write_bytes(b"")
    with manifest_lock(tmp_path / "manifest.parquet"):
        with manifest_lock(tmp_path / "manifest.parquet"):
            pass
        with manifest_lock(tmp_path / "manifest.parquet"):   # still held after the inner one left
            code = subprocess_holds(tmp_path / "manifest.parquet")
    assert "another curate run" in code
    assert subprocess_holds(tmp_path / "manifest.parquet") == "free"


def subprocess_holds(manifest) -> str:
    import subprocess
    import sys

    probe = ("import sys\nfrom curate.work_lock import manifest_lock\nfrom common.errors import UserError\n"
             "try:\n    with manifest_lock(sys.argv[1]):\n        print('free')\nexcept UserError as e:\n    print(e)")
    return subprocess.run([sys.executable, "-c", probe, str(manifest)], capture_output=True, text=True,
                          timeout=60).stdout.strip()
